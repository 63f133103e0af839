// Where `ferry-agent enroll` gets its token: a file (--token-file FILE), standard input
// (--token-file -), or FERRY_ENROLLMENT_TOKEN — never a command-line argument, which `ps` shows.

import { readFileSync } from 'node:fs';
import { FerryError } from '../errors.js';

export const TOKEN_ENV = 'FERRY_ENROLLMENT_TOKEN';

export async function readEnrollmentToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv, stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  let token: string;
  if (tokenFile === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    token = Buffer.concat(chunks).toString('utf8');
  } else if (tokenFile !== undefined) {
    try {
      token = readFileSync(tokenFile, 'utf8');
    } catch (cause) {
      throw new FerryError('enroll_failed', `cannot read the token file ${tokenFile}: ${(cause as NodeJS.ErrnoException).code ?? 'error'}`, { cause });
    }
  } else if (env[TOKEN_ENV] !== undefined) {
    token = env[TOKEN_ENV];
  } else {
    throw new FerryError('enroll_failed', `no enrollment token: pass --token-file FILE (or - for standard input), or set ${TOKEN_ENV}`);
  }
  token = token.trim();
  if (token.length === 0) throw new FerryError('enroll_failed', `the enrollment token ${tokenFile === undefined ? `in ${TOKEN_ENV}` : tokenFile === '-' ? 'on standard input' : `in ${tokenFile}`} is empty`);
  return token;
}
