// Realistic synthetic HL7 v2 messages (about 1.5 KB, ADT^A01 and ORU^R01) with unique control ids,
// for load tests and the benchmark. Patient names can carry a canary to prove nothing leaks to logs.

const ORU_OBX_COUNT = 4;

export function adtA01(controlId: string, options: { patientName?: string } = {}): Buffer {
  const name = options.patientName ?? 'DOE^JANE^Q';
  const segments = [
    `MSH|^~\\&|EPIC|CITYHOSP|FERRY|CENTRAL|20261125081500||ADT^A01^ADT_A01|${controlId}|P|2.5.1|||||USA|UNICODE UTF-8`,
    'EVN|A01|20261125081500|||JSMITH^SMITH^JOHN^^^^^^CITYHOSP',
    `PID|1||MRN${controlId.slice(-8)}^^^CITYHOSP^MR~990011223^^^USSSA^SS||${name}||19800214|F||2106-3^White^CDCREC|1200 N ELM STREET^^GREENSBORO^NC^27401-1020^USA^H||^PRN^PH^^1^336^5551234|^WPN^PH^^1^336^5559876|ENG^English^ISO639|M^Married^HL70002|CHR^Christian^HL70006|ACCT${controlId.slice(-6)}^^^CITYHOSP^AN|||N^Not Hispanic or Latino^HL70189`,
    'PD1|||CITY HOSPITAL^^12345|1234567890^PRIMARY^PAT^^^^^^NPI',
    'NK1|1|DOE^JOHN^A|SPO^Spouse^HL70063|1200 N ELM STREET^^GREENSBORO^NC^27401-1020^USA|^PRN^PH^^1^336^5551234||EC^Emergency Contact^HL70131',
    'PV1|1|I|4EAST^412^01^CITYHOSP^^^^MEDSURG||||1234567890^ATTEND^ALICE^B^^DR^^^NPI|2345678901^REFER^ROBERT^^^DR^^^NPI|3456789012^CONSULT^CAROL^^^DR^^^NPI|MED||||7|||1234567890^ATTEND^ALICE^B^^DR^^^NPI|IN||SELF|||||||||||||||||||CITYHOSP|||||20261125080000',
    'PV2|||^Chest pain, unspecified^I10||||||20261128|3|||||||||||||N',
    'OBX|1|NM|8302-2^Body height^LN||165|cm^centimeter^UCUM|||||F|||20261125081000',
    'OBX|2|NM|29463-7^Body weight^LN||68|kg^kilogram^UCUM|||||F|||20261125081000',
    'AL1|1|DA|70618^Penicillin^RXNORM|MO|Hives|20150101',
    'DG1|1||R07.9^Chest pain, unspecified^I10||20261125081500|A',
    'IN1|1|BCBS123^Blue Cross PPO|60054^^^^NAIC|BLUE CROSS BLUE SHIELD OF NC|PO BOX 2291^^DURHAM^NC^27702||^PRN^PH^^1^800^4467262|GRP55521|||||||DOE^JANE^Q|SEL^Self^HL70063|19800214|1200 N ELM STREET^^GREENSBORO^NC^27401-1020^USA|||1||||||||||||||POL99812345',
  ];
  return Buffer.from(segments.join('\r') + '\r', 'utf8');
}

export function oruR01(controlId: string, options: { patientName?: string } = {}): Buffer {
  const name = options.patientName ?? 'ROE^RICHARD^M';
  const segments = [
    `MSH|^~\\&|LIS|CITYLAB|FERRY|CENTRAL|20261125091500||ORU^R01^ORU_R01|${controlId}|P|2.5.1|||||USA|UNICODE UTF-8`,
    `PID|1||MRN${controlId.slice(-8)}^^^CITYHOSP^MR||${name}||19750630|M|||88 OAK AVENUE^^RALEIGH^NC^27601^USA^H||^PRN^PH^^1^919^5554321`,
    'PV1|1|O|LAB^^^CITYHOSP||||4567890123^ORDER^OSCAR^^^DR^^^NPI',
    `ORC|RE|ORD${controlId.slice(-6)}^EPIC|FIL${controlId.slice(-6)}^LIS||CM||||20261125083000|||4567890123^ORDER^OSCAR^^^DR^^^NPI`,
    `OBR|1|ORD${controlId.slice(-6)}^EPIC|FIL${controlId.slice(-6)}^LIS|24323-8^Comprehensive metabolic panel^LN|||20261125083000|||||||20261125084500||4567890123^ORDER^OSCAR^^^DR^^^NPI||||||20261125091000|||F`,
  ];
  const analytes = [
    ['2345-7', 'Glucose', '98', 'mg/dL', '70-99'],
    ['2160-0', 'Creatinine', '0.9', 'mg/dL', '0.6-1.3'],
    ['3094-0', 'Urea nitrogen', '14', 'mg/dL', '7-20'],
    ['2951-2', 'Sodium', '140', 'mmol/L', '136-145'],
    ['2823-3', 'Potassium', '4.2', 'mmol/L', '3.5-5.1'],
    ['2075-0', 'Chloride', '102', 'mmol/L', '98-107'],
  ];
  for (let i = 0; i < ORU_OBX_COUNT; i++) {
    const [loinc, label, value, unit, range] = analytes[i]!;
    segments.push(`OBX|${i + 1}|NM|${loinc}^${label}^LN||${value}|${unit}^${unit}^UCUM|${range}|N|||F|||20261125090000||||20261125090500||||CITY LAB^^^^^CLIA&2.16.840.1.113883.4.7&ISO^^^^05D0000000`);
    segments.push(`NTE|${i + 1}|L|Specimen received in good condition; result verified by automated analyser run ${i + 1}.`);
  }
  return Buffer.from(segments.join('\r') + '\r', 'utf8');
}

/** Alternates ADT and ORU so a load is a realistic mix; control ids are prefix + counter. */
export function realisticMessage(prefix: string, n: number, options: { patientName?: string } = {}): Buffer {
  const controlId = `${prefix}${String(n).padStart(10, '0')}`;
  return n % 2 === 0 ? adtA01(controlId, options) : oruR01(controlId, options);
}
