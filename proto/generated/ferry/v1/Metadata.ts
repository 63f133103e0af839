// Original file: proto/ferry/v1/ingest.proto


export interface Metadata {
  'messageType'?: (string);
  'triggerEvent'?: (string);
  'controlId'?: (string);
  'sendingApplication'?: (string);
  'sendingFacility'?: (string);
  'version'?: (string);
  /**
   * Payload size in bytes.
   */
  'size'?: (number);
}

export interface Metadata__Output {
  'messageType': (string);
  'triggerEvent': (string);
  'controlId': (string);
  'sendingApplication': (string);
  'sendingFacility': (string);
  'version': (string);
  /**
   * Payload size in bytes.
   */
  'size': (number);
}
