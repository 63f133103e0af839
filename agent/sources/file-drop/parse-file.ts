// Reads one candidate file safely and turns its bytes into buffered messages, or says precisely
// why it cannot be taken. Shared by the file_drop source and `ferry-agent import`: one parser.
//
// Safety: the entry is lstat'ed first and never opened unless it is a regular file no bigger than
// the cap (a FIFO or device would block or never end; a symlink could point anywhere). It is then
// opened with O_NOFOLLOW and checked to be the same inode, and read whole; a size or mtime change
// during the read means a writer is still at it, and the file is left for later.

import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import type { IncomingMessage } from '../../buffer/index.js';
import { headerMetadata, isSingleMessage, parseHeader, splitMessages } from '../../hl7/index.js';

/** Why a file was not taken; stable codes for metrics, the reason file and the import report. */
export type FileProblemCode = 'empty' | 'too_large' | 'no_msh' | 'stray_content' | 'bad_header' | 'symlink' | 'not_regular_file' | 'outside_folder' | 'unreadable';

export interface FileProblem {
  readonly code: FileProblemCode;
  /** Safe to log and to write beside the file: never content. */
  readonly message: string;
  /** Byte offset in the file where the problem is, when known. */
  readonly offset?: number;
  /** 1-based index of the message in the file, for header problems. */
  readonly messageIndex?: number;
  readonly segment?: string;
  readonly field?: number;
}

export type FileRead =
  | { readonly kind: 'ok'; readonly bytes: Buffer; readonly stat: Stats }
  | { readonly kind: 'problem'; readonly problem: FileProblem; readonly stat?: Stats }
  /** Gone before it could be read (moved or deleted by someone else). */
  | { readonly kind: 'gone' }
  /** Still being written: size or mtime changed while reading. */
  | { readonly kind: 'changed' };

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

export async function readFileSafely(path: string, maxBytes: number): Promise<FileRead> {
  let st: Stats;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'gone' };
    return { kind: 'problem', problem: { code: 'unreadable', message: `cannot stat the file: ${(err as NodeJS.ErrnoException).code ?? 'error'}` } };
  }
  if (st.isSymbolicLink()) return { kind: 'problem', stat: st, problem: { code: 'symlink', message: 'symbolic links are refused (the link itself was moved; its target is untouched)' } };
  if (!st.isFile()) return { kind: 'problem', stat: st, problem: { code: 'not_regular_file', message: `not a regular file (${describeType(st)}); refused without opening it` } };
  if (st.size > maxBytes) return { kind: 'problem', stat: st, problem: { code: 'too_large', message: `file of ${st.size} bytes exceeds max_file_bytes (${maxBytes}); not read` } };
  let handle;
  try {
    handle = await open(path, OPEN_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'gone' };
    if (code === 'ELOOP') return { kind: 'problem', problem: { code: 'symlink', message: 'became a symbolic link; refused' } };
    return { kind: 'problem', stat: st, problem: { code: 'unreadable', message: `cannot open the file: ${code ?? 'error'}` } };
  }
  try {
    const before = await handle.stat();
    if (!before.isFile() || before.ino !== st.ino || before.dev !== st.dev) return { kind: 'changed' };
    if (before.size > maxBytes) return { kind: 'problem', stat: before, problem: { code: 'too_large', message: `file of ${before.size} bytes exceeds max_file_bytes (${maxBytes}); not read` } };
    const bytes = Buffer.allocUnsafe(before.size);
    let at = 0;
    while (at < bytes.length) {
      const { bytesRead } = await handle.read(bytes, at, bytes.length - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    const after = await handle.stat();
    // Shorter than its size, longer now, or touched meanwhile: a writer is still at it.
    if (at !== before.size || after.size !== before.size || after.mtimeMs !== before.mtimeMs) return { kind: 'changed' };
    return { kind: 'ok', bytes, stat: after };
  } catch (err) {
    return { kind: 'problem', stat: st, problem: { code: 'unreadable', message: `reading the file failed: ${(err as NodeJS.ErrnoException).code ?? 'error'}` } };
  } finally {
    await handle.close().catch(() => {});
  }
}

/**
 * For files nobody writes any more (an import's historical tree, already listed without following
 * links): open with O_NOFOLLOW, check it is a regular file within the cap, read it. Synchronous
 * calls: for the many small files of a migration, the thread-pool round trips and file-handle
 * objects of the promise API cost more than the reads themselves (measured: about 1.5 s of 7 s CPU
 * for 10,000 files), and import is a command of its own with nothing else to serve meanwhile.
 */
export function readSettledFile(path: string, maxBytes: number): FileRead {
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'gone' };
    if (code === 'ELOOP') return { kind: 'problem', problem: { code: 'symlink', message: 'symbolic links are not followed' } };
    return { kind: 'problem', problem: { code: 'unreadable', message: `cannot open the file: ${code ?? 'error'}` } };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { kind: 'problem', stat: st, problem: { code: 'not_regular_file', message: `not a regular file (${describeType(st)})` } };
    if (st.size > maxBytes) return { kind: 'problem', stat: st, problem: { code: 'too_large', message: `file of ${st.size} bytes exceeds the size cap (${maxBytes}); not read` } };
    // Its own memory (not the shared pool): import hands it to another thread without a copy.
    const bytes = Buffer.allocUnsafeSlow(st.size);
    let at = 0;
    while (at < bytes.length) {
      const n = readSync(fd, bytes, at, bytes.length - at, at);
      if (n === 0) break;
      at += n;
    }
    if (at !== st.size) return { kind: 'changed' };
    return { kind: 'ok', bytes, stat: st };
  } catch (err) {
    return { kind: 'problem', problem: { code: 'unreadable', message: `reading the file failed: ${(err as NodeJS.ErrnoException).code ?? 'error'}` } };
  } finally {
    closeSync(fd);
  }
}

function describeType(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a file';
}

export type ParsedFile = { readonly ok: true; readonly messages: IncomingMessage[] } | { readonly ok: false; readonly problem: FileProblem };

/**
 * The file's messages (one, several, or FHS/BHS batches; CR, LF or CRLF; blank lines between),
 * each an exact slice of the file, or the first reason none of it can be stored: a file is taken
 * whole or not at all.
 */
export function parseFileMessages(bytes: Buffer, sourceId: string, receivedAt: number): ParsedFile {
  if (bytes.length === 0 || isBlank(bytes)) return { ok: false, problem: { code: 'empty', message: bytes.length === 0 ? 'the file is empty' : 'the file holds only blank lines' } };
  let bodies: Buffer[];
  if (isSingleMessage(bytes)) {
    bodies = [bytes];
  } else {
    const split = splitMessages(bytes);
    if (split.messages.length === 0) return { ok: false, problem: { code: 'no_msh', message: 'no MSH segment found: not an HL7 v2 file', segment: 'MSH', ...(split.strayOffset !== undefined ? { offset: split.strayOffset } : {}) } };
    if (split.strayOffset !== undefined) return { ok: false, problem: { code: 'stray_content', message: `content outside any message at byte ${split.strayOffset}`, offset: split.strayOffset } };
    bodies = split.messages.map((s) => bytes.subarray(s.start, s.end));
  }
  const messages: IncomingMessage[] = [];
  for (let i = 0; i < bodies.length; i++) {
    const body = bodies[i]!;
    const parsed = parseHeader(body);
    // An empty MSH-10 is kept: no acknowledgement has to reference it (real exports have such
    // messages), unlike on MLLP. A header that cannot be read at all makes the file unusable.
    if (!parsed.ok && !(parsed.header && parsed.problem.location?.field === 10)) {
      const loc = parsed.problem.location;
      return {
        ok: false,
        problem: {
          code: 'bad_header',
          message: `message ${i + 1} of ${bodies.length}: ${parsed.problem.reason}`,
          messageIndex: i + 1,
          offset: body.byteOffset - bytes.byteOffset,
          ...(loc ? { segment: loc.segment, ...(loc.field !== undefined ? { field: loc.field } : {}) } : {}),
        },
      };
    }
    const h = parsed.header!;
    messages.push({
      sourceId,
      payload: body,
      receivedAt,
      meta: headerMetadata(h),
    });
  }
  return { ok: true, messages };
}

function isBlank(bytes: Buffer): boolean {
  for (const b of bytes) if (b !== 0x0d && b !== 0x0a && b !== 0x20 && b !== 0x09) return false;
  return true;
}

export function sha256Of(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}
