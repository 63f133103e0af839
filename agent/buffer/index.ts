// The agent's store-and-forward buffer: encrypted rows in SQLite, appended with group commit,
// read in seq order and deleted once delivered. Design notes: README.md beside this file.

export {
  MessageBuffer,
  type AppendOptions,
  type AppendOutcome,
  type AppendResult,
  type BufferOptions,
  type BufferStats,
  type FileAppendResult,
  type IncomingFile,
  type IncomingMessage,
  type SealedFileAppend,
  rowAad,
  type TakenFile,
  type MessageMeta,
  type StoredMessage,
} from './buffer.js';
export { Keyring } from './keyring.js';
export { checkBuffer, type CheckReport } from './check.js';
export { acquireBufferLock, lockPathOf, type BufferLock } from './lock.js';
export { openTakenFileIndex, type TakenFileIndex } from './taken-files.js';
