// Reads a YAML config file and validates it whole: every problem comes back at once, by path.

import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { controlPlaneConfigSchema, type ControlPlaneConfig } from './schema.js';

export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export type ValidationResult = { readonly ok: true; readonly config: ControlPlaneConfig } | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

export function validateConfig(raw: unknown): ValidationResult {
  const parsed = controlPlaneConfigSchema.safeParse(raw ?? {});
  if (parsed.success) return { ok: true, config: parsed.data };
  return { ok: false, problems: parsed.error.issues.map(toProblem) };
}

function toProblem(issue: z.core.$ZodIssue): ConfigProblem {
  const path = issue.path.length === 0 ? '(root)' : issue.path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
  return { path, message: issue.message };
}

export function validateYaml(text: string): ValidationResult {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    return { ok: false, problems: doc.errors.map((e) => ({ path: e.linePos?.[0] ? `line ${e.linePos[0].line}` : '(yaml)', message: e.message.split('\n')[0] ?? e.message })) };
  }
  return validateConfig(doc.toJS());
}

/** undefined when the file cannot be read (the caller reports it). */
export function loadConfigFile(path: string): ValidationResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { ok: false, problems: [{ path: '(file)', message: `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}` }] };
  }
  return validateYaml(text);
}

export function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
}
