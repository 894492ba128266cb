// Structured logs through pino on stderr: JSON lines when stderr is not a
// terminal (for log collectors), one readable line each when it is. A VM's
// messages carry its Firecracker pid as `vm`; every message that has numbers
// carries them as fields too (and names its `event`), so a log pipeline can
// query them without parsing the readable text.
import { pino, stdTimeFunctions, destination, type Logger as PinoLogger } from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'json' | 'text';

/** A field's value: what JSON can hold. */
export type LogValue = string | number | boolean | null | readonly LogValue[] | { readonly [key: string]: LogValue };

/** Fields attached to one message: the VM it concerns, what happened (`event`), its numbers. */
export interface LogContext {
  vm?: number;
  event?: string;
  [field: string]: LogValue | undefined;
}

export interface Logger {
  debug(msg: string, ctx?: LogContext): void;
  info(msg: string, ctx?: LogContext): void;
  warn(msg: string, ctx?: LogContext): void;
  error(msg: string, ctx?: LogContext): void;
}

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

export function isLogLevel(s: string): s is LogLevel {
  return (LEVELS as readonly string[]).includes(s);
}

export function isLogFormat(s: string): s is LogFormat {
  return s === 'json' || s === 'text';
}

export function defaultLogFormat(): LogFormat {
  return process.stderr.isTTY ? 'text' : 'json';
}

export function createLogger(level: LogLevel, format: LogFormat = defaultLogFormat()): Logger {
  if (format === 'text') return textLogger(level);
  const p: PinoLogger = pino({
    level,
    base: { pid: process.pid },
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, destination({ fd: 2, sync: true }));
  const at = (lvl: Exclude<LogLevel, 'silent'>) => (msg: string, ctx?: LogContext): void => {
    if (ctx) p[lvl](ctx, msg);
    else p[lvl](msg);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

// Readable lines carry the message only: it already says what the fields hold.
function textLogger(level: LogLevel): Logger {
  const min = LEVELS.indexOf(level);
  const at = (lvl: Exclude<LogLevel, 'silent'>) => (msg: string): void => {
    if (LEVELS.indexOf(lvl) < min) return;
    process.stderr.write(`${new Date().toISOString()} snapfault ${lvl}: ${msg}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
