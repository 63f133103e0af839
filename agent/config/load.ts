// Reads a YAML config file and validates it whole: every problem comes back at once, by path.

import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { toProblem, type ConfigProblem } from '../../proto/policy/index.js';
import { FerryError } from '../errors.js';
import { agentConfigSchema, type AgentConfig } from './schema.js';

export type { ConfigProblem };

export type ValidationResult = { readonly ok: true; readonly config: AgentConfig } | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

export function validateConfig(raw: unknown): ValidationResult {
  const parsed = agentConfigSchema.safeParse(raw ?? {});
  if (parsed.success) return { ok: true, config: parsed.data };
  return { ok: false, problems: parsed.error.issues.map(toProblem) };
}


/** Parses YAML text; YAML syntax errors are reported as problems too, with line numbers. */
export function validateYaml(text: string): ValidationResult {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({ path: e.linePos?.[0] ? `line ${e.linePos[0].line}` : '(yaml)', message: e.message.split('\n')[0] ?? e.message })),
    };
  }
  return validateConfig(doc.toJS());
}

export function loadConfigFile(path: string): ValidationResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new FerryError('config_unreadable', `cannot read config file ${path}: ${(cause as NodeJS.ErrnoException).code ?? 'error'}`, { cause });
  }
  return validateYaml(text);
}

export function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
}
