// The fleet bus's options: the config's `mqtt` section (raw) → with defaults → compiled, in one
// function, so both buses and the tests read the same resolved values.

import type { ControlPlaneConfig } from '../../config/index.js';
import { parseListen } from '../../config/index.js';

export const DEFAULT_MQTT_LISTEN = '0.0.0.0:1883';
/** Policies and statuses are a few KiB; a client sending more than this is misbehaving. */
export const DEFAULT_MAX_PACKET_BYTES = 256 * 1024;
export const DEFAULT_CONNECT_TIMEOUT_SECS = 10;

export type MqttConfig = ControlPlaneConfig['mqtt'];

export interface EmbeddedBusOptions {
  readonly kind: 'embedded';
  readonly host: string;
  readonly port: number;
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined;
  readonly advertiseUrl: string | undefined;
  readonly maxPacketBytes: number;
  readonly connectTimeoutMs: number;
}

export interface ExternalBusOptions {
  readonly kind: 'external';
  readonly url: string;
  readonly advertiseUrl: string | undefined;
  readonly username: string | undefined;
  readonly passwordFile: string | undefined;
  readonly caFile: string | undefined;
  readonly mosquitto: { readonly passwordFile: string; readonly aclFile: string; readonly pidFile: string | undefined } | undefined;
}

export type FleetBusOptions = EmbeddedBusOptions | ExternalBusOptions;

export function compileBusOptions(mqtt: MqttConfig): FleetBusOptions {
  if (mqtt.url !== undefined) {
    return {
      kind: 'external',
      url: mqtt.url,
      advertiseUrl: mqtt.advertise_url,
      username: mqtt.username,
      passwordFile: mqtt.password_file,
      caFile: mqtt.ca_file,
      mosquitto: mqtt.mosquitto && { passwordFile: mqtt.mosquitto.password_file, aclFile: mqtt.mosquitto.acl_file, pidFile: mqtt.mosquitto.pid_file },
    };
  }
  const listen = parseListen(mqtt.listen ?? DEFAULT_MQTT_LISTEN)!;
  return {
    kind: 'embedded',
    host: listen.host,
    port: listen.port,
    tls: mqtt.tls && { certFile: mqtt.tls.cert_file, keyFile: mqtt.tls.key_file },
    advertiseUrl: mqtt.advertise_url,
    maxPacketBytes: mqtt.max_packet_bytes ?? DEFAULT_MAX_PACKET_BYTES,
    connectTimeoutMs: (mqtt.connect_timeout_secs ?? DEFAULT_CONNECT_TIMEOUT_SECS) * 1000,
  };
}

/** A URL with any user:password removed, safe to log and to hand to agents. */
export function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//');
  }
}
