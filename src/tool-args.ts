// Argument parsing shared by the command-line tools (pack, trace, report...):
// strict options, and usage errors that point at the tool's --help.
import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

export interface ToolArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export type ToolOptions = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

export function parseTool(argv: string[], name: string, options: ToolOptions): ToolArgs {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { values: r.values as ToolArgs['values'], positionals: r.positionals };
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]}; see snapfault ${name} --help`);
  }
}

export function onePositional(positionals: string[], name: string, what: string): string {
  if (positionals.length !== 1) throw new UsageError(`${name} takes one ${what}, got ${positionals.length}; see snapfault ${name} --help`);
  return positionals[0];
}

export function stringOption(v: ToolArgs['values'][string]): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
