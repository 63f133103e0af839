// The mllp source: HL7 v2 over MLLP (TCP or TLS), acknowledged only after a durable commit.

export { MllpSource, type MllpSourceDeps, type SourceHealth, type MllpSourceCounters } from './source.js';
export { MllpDecoder, frame, type Frame } from './decoder.js';
export { FrameHandler, hashPrefix, type FrameSink, type FrameHandlerEvents, type FrameHandlerOptions } from './frame-handler.js';
