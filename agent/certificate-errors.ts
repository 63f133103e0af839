// How node reports a TLS peer this agent does not trust (OpenSSL's verify results as error codes),
// so each client can tell the operator which CA setting to change instead of a bare handshake error.

const UNTRUSTED_CERTIFICATE = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export function isUntrustedCertificateCode(code: string | number | undefined): boolean {
  return typeof code === 'string' && UNTRUSTED_CERTIFICATE.has(code);
}
