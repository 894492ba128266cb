// The real object store the S3 tests run against: OpenStack Swift with s3api
// (scripts/object-store.sh). Installed (apt-get, as root) and started here
// when it is not already: CI starts from a clean machine and runs only
// `npm ci && npm test`. A store that cannot be installed or started fails
// the tests saying why; nothing is skipped.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { S3Client, CreateBucketCommand, type S3ClientConfig } from '@aws-sdk/client-s3';
import { ROOT } from './paths.js';

const SCRIPT = join(ROOT, 'scripts', 'object-store.sh');

export interface ObjectStore {
  endpoint: string;
  /** Environment for a snapfault command to reach it (credentials, region). */
  env: NodeJS.ProcessEnv;
  /** A client for the tests' own looks at the bucket. */
  client: S3Client;
  /** A new empty bucket. */
  newBucket: (label: string) => Promise<string>;
  /** Stops the servers if this process started them (a store a developer started stays up). */
  release: () => void;
  /** CPU time (ms, user and system) its processes have used so far: read before and after a restore, the store's own cost of it. */
  cpuMs: () => number;
}

/** Where scripts/object-store.sh keeps the servers' pid files. */
const RUN_DIR = join(process.env.SNAPFAULT_OBJECT_STORE_DIR ?? join(process.env.TMPDIR ?? '/tmp', 'snapfault-object-store'), 'run');
const CLOCK_TICKS_PER_S = 100; // USER_HZ: what /proc/PID/stat counts in on Linux

function storeCpuMs(): number {
  let ticks = 0;
  for (const f of existsSync(RUN_DIR) ? readdirSync(RUN_DIR) : []) {
    if (!f.endsWith('.pid')) continue;
    try {
      // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
      const fields = readFileSync(`/proc/${readFileSync(join(RUN_DIR, f), 'utf8').trim()}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // A server that is not running uses no CPU.
    }
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}

function script(command: string, timeoutMs: number): { ok: boolean; output: string } {
  const r = spawnSync(SCRIPT, [command], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}`.trim();
  return { ok: r.status === 0, output };
}

export function clientConfig(endpoint: string): S3ClientConfig {
  return {
    endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'test:tester', secretAccessKey: 'testing' },
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

export async function ensureObjectStore(): Promise<ObjectStore> {
  const wasRunning = script('status', 30_000).ok;
  if (!wasRunning) {
    const install = script('install', 600_000);
    if (!install.ok) throw new Error(`the object store (Swift) cannot be installed by scripts/object-store.sh install: ${install.output.split('\n').slice(-8).join(' | ')}`);
    const start = script('start', 120_000);
    if (!start.ok) throw new Error(`the object store (Swift) cannot be started by scripts/object-store.sh start: ${start.output.split('\n').slice(-12).join(' | ')}`);
  }
  const endpoint = `http://127.0.0.1:${process.env.SNAPFAULT_S3_PORT ?? '8480'}`;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const client = new S3Client(clientConfig(endpoint));
  return {
    endpoint,
    env: {
      AWS_ACCESS_KEY_ID: 'test:tester', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1',
      // Nothing from the developer's own AWS setup may reach the tests.
      AWS_PROFILE: '', AWS_SESSION_TOKEN: '', AWS_ENDPOINT_URL: '', AWS_ENDPOINT_URL_S3: '', AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    },
    client,
    newBucket: async (label) => {
      const bucket = `sf-${label}-${randomBytes(4).toString('hex')}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
    release: () => {
      client.destroy();
      if (!wasRunning) script('stop', 60_000);
    },
    cpuMs: storeCpuMs,
  };
}
