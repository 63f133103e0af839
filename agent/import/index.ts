// `ferry-agent import`: bulk-loads a tree of historical HL7 files (a legacy-system migration) into
// the buffer, offline, resumable, through the same parser as the file_drop source.

export { runImport, type FileOutcome, type ImportOptions, type ImportReport } from './import.js';
export { ProgressBar, formatProgress, formatDuration, type ImportProgress } from './progress.js';
export { processesHolding } from './buffer-in-use.js';
export { importCommand, IMPORT_USAGE, type ImportCommandInput } from './cli.js';
