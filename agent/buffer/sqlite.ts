// Promise wrappers over the callback API of `sqlite3`, kept to what the buffer uses.

import sqlite3 from 'sqlite3';

export type SqlValue = string | number | bigint | Buffer | null;
export type Row = Record<string, SqlValue>;

export interface RunResult {
  readonly changes: number;
  readonly lastID: number;
}

export function openDatabase(path: string, readonly = false): Promise<sqlite3.Database> {
  const mode = readonly ? sqlite3.OPEN_READONLY : sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE;
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(path, mode, (err) => (err ? reject(err) : resolve(db)));
  });
}

export function run(db: sqlite3.Database | sqlite3.Statement, sql: string, params: readonly SqlValue[] = []): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    (db as sqlite3.Database).run(sql, params, function (this: sqlite3.RunResult, err: Error | null) {
      if (err) reject(err);
      else resolve({ changes: this.changes, lastID: this.lastID });
    });
  });
}

export function exec(db: sqlite3.Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(sql, (err) => (err ? reject(err) : resolve())));
}

export function get<T = Row>(db: sqlite3.Database, sql: string, params: readonly SqlValue[] = []): Promise<T | undefined> {
  return new Promise((resolve, reject) => db.get(sql, params, (err, row) => (err ? reject(err) : resolve(row as T | undefined))));
}

export function all<T = Row>(db: sqlite3.Database, sql: string, params: readonly SqlValue[] = []): Promise<T[]> {
  return new Promise((resolve, reject) => db.all(sql, params, (err, rows) => (err ? reject(err) : resolve(rows as T[]))));
}

export function prepare(db: sqlite3.Database, sql: string): Promise<sqlite3.Statement> {
  return new Promise((resolve, reject) => {
    const stmt = db.prepare(sql, (err) => (err ? reject(err) : resolve(stmt)));
  });
}

export function runStatement(stmt: sqlite3.Statement, params: readonly SqlValue[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    stmt.run(params, function (this: sqlite3.RunResult, err: Error | null) {
      if (err) reject(err);
      else resolve({ changes: this.changes, lastID: this.lastID });
    });
  });
}

export function allStatement<T = Row>(stmt: sqlite3.Statement, params: readonly SqlValue[]): Promise<T[]> {
  return new Promise((resolve, reject) => stmt.all(params, (err, rows) => (err ? reject(err) : resolve(rows as T[]))));
}

export function finalize(stmt: sqlite3.Statement): Promise<void> {
  return new Promise((resolve) => stmt.finalize(() => resolve()));
}

export function close(db: sqlite3.Database): Promise<void> {
  return new Promise((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
}
