// Running the CLI as a user would, and what its refusals must look like.
import { expect } from 'chai';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { SNAPFAULT } from './paths.js';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], opts: SpawnSyncOptions = {}): CliRun {
  const r = spawnSync(SNAPFAULT, args, { encoding: 'utf8', timeout: 20_000, ...opts });
  return { code: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Expects exit 2 and one line on stderr matching `re`. */
export function expectRefused(r: CliRun, re: RegExp, what: string): void {
  expect(r.code, `${what}: ${r.stderr}`).to.equal(2);
  expect(r.stderr, what).to.match(re);
  expect(r.stderr, what).to.match(/^snapfault: [^\n]+\n$/);
}

export const digest = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Expects no temporary file of an atomic write left in `dir`. */
export function expectNoLeftovers(dir: string): void {
  expect(readdirSync(dir).filter((f) => /partial|\.tmp-/.test(f))).to.deep.equal([]);
}
