// HL7 v2 helpers for a forwarder: read the MSH header from raw bytes, split blocks into messages,
// and build acknowledgements. No structure validation beyond MSH: Ferry stores what it receives.

export { parseHeader, byteStringToText, headerMetadata, skipBom, type Delimiters, type HeaderMetadata, type MessageHeader, type HeaderProblem, type HeaderResult } from './header.js';
export { ackCodeFor, buildAck, compareVersions, isAcknowledgement, isEnhancedMode, type AckCode, type AckError, type AckOptions, type Outcome } from './ack.js';
export { splitMessages, isSingleMessage, type MessageSpan, type SplitResult } from './split.js';
export {
  ERR_APPLICATION_INTERNAL,
  ERR_REQUIRED_FIELD_MISSING,
  ERR_SEGMENT_SEQUENCE,
  ERR_VALUE_TOO_LONG,
  ERROR_CODE_TEXT,
  type HL7ErrorCode,
} from './error-codes.js';
