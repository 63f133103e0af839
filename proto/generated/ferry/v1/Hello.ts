// Original file: proto/ferry/v1/ingest.proto


export interface Hello {
  /**
   * Must equal the agent id the stream authenticated with (metadata x-ferry-agent-id).
   */
  'agentId'?: (string);
  /**
   * Random id made when the agent's buffer was created; seqs are unique within it.
   */
  'bufferId'?: (string);
  'agentVersion'?: (string);
}

export interface Hello__Output {
  /**
   * Must equal the agent id the stream authenticated with (metadata x-ferry-agent-id).
   */
  'agentId': (string);
  /**
   * Random id made when the agent's buffer was created; seqs are unique within it.
   */
  'bufferId': (string);
  'agentVersion': (string);
}
