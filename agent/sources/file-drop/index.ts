// The file_drop source: HL7 files dropped into a watched folder, each taken whole, committed with
// its hash, then archived. parse-file.ts is also the parser of `ferry-agent import`.

export { FileDropSource, type FileDropSourceDeps, type FileDropCounters, type FileSink } from './source.js';
export { parseFileMessages, readFileSafely, readSettledFile, sha256Of, type FileProblem, type FileProblemCode, type FileRead, type ParsedFile } from './parse-file.js';
export { compileFileFilter, isTemporaryName, type FileFilterOptions } from './file-filter.js';
