// A small structural diff of two JSON documents, for the audit log: every changed leaf with its
// path and old/new values. Objects are compared key by key, arrays index by index; a value added or
// removed shows only `new` or `old`; a whole object or array added or removed shows each of its leaves.

export interface JsonChange {
  readonly path: string;
  readonly old?: unknown;
  readonly new?: unknown;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function jsonDiff(before: unknown, after: unknown, path = ''): JsonChange[] {
  // An object or array added or removed whole is listed leaf by leaf, like any other change.
  if (before === undefined && (isObject(after) || Array.isArray(after))) before = Array.isArray(after) ? [] : {};
  if (after === undefined && (isObject(before) || Array.isArray(before))) after = Array.isArray(before) ? [] : {};
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    return keys.flatMap((k) => jsonDiff(before[k], after[k], path === '' ? k : `${path}.${k}`));
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    const n = Math.max(before.length, after.length);
    return Array.from({ length: n }, (_, i) => jsonDiff(before[i], after[i], `${path}[${i}]`)).flat();
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const change: { path: string; old?: unknown; new?: unknown } = { path: path === '' ? '(root)' : path };
  if (before !== undefined) change.old = before;
  if (after !== undefined) change.new = after;
  return [change];
}
