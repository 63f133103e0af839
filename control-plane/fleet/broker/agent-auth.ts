// The embedded broker's gatekeeping, as aedes hooks. Only enrolled, non-revoked agents connect:
// username = agent id, password = its secret, client id = the username (so no agent can take over
// another's session or last will). Each then publishes and subscribes only on its own topics, in
// the right direction (proto/fleet agentMayPublish / agentMaySubscribe). Refusals are logged with
// the agent id and reason — never the password — and counted.

import type { AedesOptions, AuthenticateError, Client, PublishPacket } from 'aedes';
import { agentMayPublish, agentMaySubscribe } from '../../../proto/fleet/index.js';
import type { Logger } from '../../log.js';
import type { MessageStore } from '../../store/index.js';
import type { BusCounters } from './bus-events.js';

// CONNACK return codes (MQTT 3.1.1 §3.2.2.3); aedes' own enum is a const enum we cannot import.
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

export type AgentVerifier = Pick<MessageStore, 'verifyAgentSecret'>;

/** Longest username/password we even look at: a UUID id and a 43-character base64url secret fit easily. */
const MAX_CREDENTIAL_CHARS = 256;

function refusal(code: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: code }) as AuthenticateError;
}

export function agentAuthHooks(deps: { store: AgentVerifier; log: Logger; counters: BusCounters }): Pick<AedesOptions, 'authenticate' | 'authorizePublish' | 'authorizeSubscribe'> {
  const { store, log, counters } = deps;
  const refuse = (client: Client, agentId: string | undefined, reason: string, code: number, done: (err: AuthenticateError | null, ok: boolean | null) => void): void => {
    counters.add('connections_refused');
    log.warn({ component: 'fleet', agent_id: agentId, client_id: client.id, reason }, 'MQTT connection refused');
    done(refusal(code, reason), false);
  };
  return {
    authenticate(client, username, password, done) {
      if (username === undefined || password === undefined) return refuse(client, username, 'no username or password', NOT_AUTHORIZED, done);
      if (username.length > MAX_CREDENTIAL_CHARS || password.length > MAX_CREDENTIAL_CHARS) return refuse(client, undefined, 'credentials too long', BAD_USERNAME_OR_PASSWORD, done);
      // Checked before the secret: a client id that is not the username would let one agent
      // take over another's session and last will.
      if (client.id !== username) return refuse(client, username, 'client id is not the agent id', NOT_AUTHORIZED, done);
      store.verifyAgentSecret(username, password.toString('utf8')).then(
        (v) => {
          if (v.status === 'ok') {
            counters.add('connections_accepted');
            done(null, true);
          } else refuse(client, username, v.status, v.status === 'revoked' ? NOT_AUTHORIZED : BAD_USERNAME_OR_PASSWORD, done);
        },
        (err: unknown) => {
          log.error({ component: 'fleet', agent_id: username, err: { message: (err as Error).message } }, 'MQTT authentication failed: the store did not answer');
          done(refusal(3, 'server unavailable'), false);
        },
      );
    },
    authorizePublish(client, packet: PublishPacket, done) {
      // client is null for a will published by the broker itself on behalf of a gone client.
      const agentId = client?.id ?? (packet as PublishPacket & { clientId?: string }).clientId;
      if (agentId !== undefined && agentMayPublish(agentId, packet.topic)) return done(null);
      counters.add('publishes_refused');
      log.warn({ component: 'fleet', agent_id: agentId, topic: packet.topic }, 'MQTT publish refused: agents publish only their own status, telemetry and command results; the connection is closed');
      done(new Error('publish not authorized'));
    },
    authorizeSubscribe(client, subscription, done) {
      if (agentMaySubscribe(client.id, subscription.topic)) return done(null, subscription);
      counters.add('subscribes_refused');
      log.warn({ component: 'fleet', agent_id: client.id, topic: subscription.topic }, 'MQTT subscription refused: agents subscribe only to their own policy and commands');
      // null = failure (SUBACK 0x80) for this filter; the connection and its other subscriptions stay.
      done(null, null);
    },
  };
}
