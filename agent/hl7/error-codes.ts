// HL7 table 0357 (message error condition codes): the codes Ferry puts in ERR segments.

export const ERR_SEGMENT_SEQUENCE = 100;
export const ERR_REQUIRED_FIELD_MISSING = 101;
export const ERR_VALUE_TOO_LONG = 104;
export const ERR_APPLICATION_INTERNAL = 207;

export type HL7ErrorCode =
  | typeof ERR_SEGMENT_SEQUENCE
  | typeof ERR_REQUIRED_FIELD_MISSING
  | typeof ERR_VALUE_TOO_LONG
  | typeof ERR_APPLICATION_INTERNAL;

export const ERROR_CODE_TEXT: Readonly<Record<HL7ErrorCode, string>> = {
  [ERR_SEGMENT_SEQUENCE]: 'Segment sequence error',
  [ERR_REQUIRED_FIELD_MISSING]: 'Required field missing',
  [ERR_VALUE_TOO_LONG]: 'Value too long',
  [ERR_APPLICATION_INTERNAL]: 'Application internal error',
};
