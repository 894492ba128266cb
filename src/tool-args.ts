// Argument parsing shared by every command. node:util's parseArgs splits the
// words (not strict, so that it hands back tokens instead of throwing its own
// messages); every mistake is then reported here, in one line: an unknown
// option (with the nearest known one), a missing value, a value given to an
// option that takes none, an option given twice. Numbers and choices are
// checked with the accepted range in the message.
import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** Its value is a path: a value that looks like an option gets the hint to write ./NAME. */
  path?: boolean;
}

export type ToolOptions = Record<string, OptionSpec>;

type ValueOf<S extends OptionSpec> = S['type'] extends 'boolean' ? boolean : S['multiple'] extends true ? string[] : string;

export type ToolValues<O extends ToolOptions> = { [K in keyof O]?: ValueOf<O[K]> } & { help?: boolean };

export interface ToolArgs<O extends ToolOptions = ToolOptions> {
  values: ToolValues<O>;
  positionals: string[];
}

/** A negative or fractional number given as a value (`--workers -1`): a value, not an option, so that its range can be named. */
const NUMBER = /^-(\d|\.\d)/;

/**
 * Parses `argv` against `options` (plus -h/--help). `name` is the command as
 * typed after `snapfault` ('pack', 'trace merge'; '' for the serving form), for
 * "see snapfault NAME --help".
 */
export function parseTool<const O extends ToolOptions>(argv: string[], name: string, options: O): ToolArgs<O> {
  const spec: ToolOptions = { ...options, help: { type: 'boolean', short: 'h' } };
  const seeHelp = `see snapfault ${name ? `${name} ` : ''}--help`;
  // Only the keys parseArgs knows, and none of them undefined: it checks their types.
  const forNode = Object.fromEntries(Object.entries(spec).map(([k, o]) => [k, {
    type: o.type, ...(o.short !== undefined ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}),
  }]));
  let tokens;
  try {
    ({ tokens } = parseArgs({ args: argv, options: forNode, allowPositionals: true, strict: false, tokens: true }));
  } catch (e) {
    // Not expected without strict; should a Node version throw anyway, its code tells the kind of mistake.
    const code = (e as { code?: string }).code ?? '';
    throw new UsageError(`${PARSE_ERRORS[code] ?? 'the command line cannot be read'}; ${seeHelp}`);
  }
  const values: Record<string, string | boolean | string[]> = {};
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') positionals.push(t.value);
    if (t.kind !== 'option') continue;
    const o = Object.hasOwn(spec, t.name) ? spec[t.name] : undefined;
    if (o === undefined) {
      const near = t.rawName.startsWith('--') ? nearest(t.name, Object.keys(spec)) : null;
      throw new UsageError(`unknown option ${t.rawName}${near ? `: did you mean --${near}?` : `; ${seeHelp}`}`);
    }
    if (o.type === 'boolean') {
      if (t.value !== undefined) throw new UsageError(`${t.rawName} takes no value`);
      values[t.name] = true;
      continue;
    }
    if (t.value === undefined) throw new UsageError(`${t.rawName} needs a value; ${seeHelp}`);
    if (!t.inlineValue && t.value.length > 1 && t.value.startsWith('-') && !NUMBER.test(t.value)) {
      // parseArgs took the next word as the value: a forgotten value, far more likely than a name starting with '-'.
      const known = tokenNames(t.value, spec);
      const hint = `${t.value} ${known ? 'is an option' : 'looks like an option'}${o.path ? `; write ./${t.value} for a file of that name` : ''}`;
      throw new UsageError(`${t.rawName} needs a value (${hint}); ${seeHelp}`);
    }
    if (o.multiple) {
      const list = values[t.name];
      if (Array.isArray(list)) list.push(t.value);
      else values[t.name] = [t.value];
    } else {
      if (t.name in values) throw new UsageError(`${o.short ? `-${o.short}/` : ''}--${t.name} given twice: give it once`);
      values[t.name] = t.value;
    }
  }
  return { values: values as ToolValues<O>, positionals };
}

const PARSE_ERRORS: Record<string, string> = {
  ERR_PARSE_ARGS_UNKNOWN_OPTION: 'unknown option',
  ERR_PARSE_ARGS_INVALID_OPTION_VALUE: 'an option is missing its value or has one it does not take',
  ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL: 'unexpected argument',
};

function tokenNames(word: string, spec: ToolOptions): boolean {
  if (word.startsWith('--')) return Object.hasOwn(spec, word.slice(2).split('=')[0]);
  return Object.values(spec).some((o) => o.short === word[1]);
}

export function onePositional(positionals: string[], name: string, what: string): string {
  if (positionals.length !== 1) throw new UsageError(`${name} takes one ${what}, got ${positionals.length}; see snapfault ${name} --help`);
  return positionals[0];
}

export function stringOption(v: ToolArgs['values'][string]): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

const shown = (v: string): string => (v === '' ? 'nothing' : v);

/** A whole number in [min, max]; `def` when the option was not given. */
export function intOption(v: string | undefined, option: string, r: { def: number; min: number; max: number }): number {
  if (v === undefined) return r.def;
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || n < r.min || n > r.max) throw new UsageError(`${option} must be a whole number from ${r.min} to ${r.max}, got ${shown(v)}`);
  return n;
}

/** An octal file mode in [min, max]. */
export function octalOption(v: string | undefined, option: string, r: { def: number; min: number; max: number }): number {
  if (v === undefined) return r.def;
  const n = Number.parseInt(v, 8);
  if (!/^[0-7]+$/.test(v) || n < r.min || n > r.max) {
    throw new UsageError(`${option} must be an octal mode from ${r.min.toString(8)} to ${r.max.toString(8)}, got ${shown(v)}`);
  }
  return n;
}

/** One of `choices`; `def` when the option was not given. */
export function choiceOption<T extends string>(v: string | undefined, option: string, choices: readonly T[], def: T): T {
  if (v === undefined) return def;
  const found = choices.find((c) => c === v);
  if (found === undefined) throw new UsageError(`${option} must be ${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}, got ${shown(v)}`);
  return found;
}

/**
 * The candidate `word` is most likely a misspelling of: at most one edit
 * (insert, delete, replace, swap two neighbours) away for words of up to 4
 * letters, two for longer ones, case aside; null when none is that close.
 */
export function nearest(word: string, candidates: readonly string[]): string | null {
  const w = word.toLowerCase();
  const limit = w.length <= 4 ? 1 : 2;
  let best: string | null = null;
  let bestDistance = limit + 1;
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Optimal string alignment distance: Levenshtein plus swaps of neighbouring letters ("inpsect"). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
