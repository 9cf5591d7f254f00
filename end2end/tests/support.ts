// Shared by the config and the specs: how to start `liveview` for a test, and the
// Chromium flags this machine needs (root, no GPU, closed network).
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(__dirname, '..', '..');

export const DASHBOARD_PORT = Number(process.env.E2E_PORT ?? 3901);
export const BINARY = process.env.LIVEVIEW_BIN ?? path.join(root, 'target', 'release', 'liveview');
export const SITE = process.env.LIVEVIEW_SITE ?? path.join(root, 'dist');
/** How many app servers `liveview` runs (`--servers`). */
export const SERVERS = Number(process.env.E2E_SERVERS ?? 3);

/** The app servers' ids, as /status lists them: `server-1` … `server-N`. */
export function serverIds(): string[] {
  return Array.from({ length: SERVERS }, (_, i) => `server-${i + 1}`);
}

/** Every component /status lists, in its order. */
export function componentIds(): string[] {
  return ['dashboard', 'load-balancer', ...serverIds(), 'database', 'smtp'];
}

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Every listener but the dashboard on an ephemeral port; a fresh data directory. */
export function liveviewArgs(port: number, dataDir: string): string[] {
  return [
    '--dashboard', `127.0.0.1:${port}`,
    '--lb', '127.0.0.1:0',
    '--servers', String(SERVERS),
    '--server-port-base', '0',
    '--smtp-sink', '127.0.0.1:0',
    '--data', dataDir,
    '--site', SITE,
    '--geoip-db', path.join(root, 'tools/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb'),
    '--world-atlas', path.join(root, 'tools/node_modules/world-atlas/countries-110m.json'),
    // Alerts evaluated twice a second, so a spec sees one fire without waiting 5 s.
    '--alert-interval-ms', '500',
  ];
}

const dataDirs = new Set<string>();

/** A new data directory, removed when this Node process exits (the config is loaded in
 * every worker too, so each makes its own and cleans up after itself). */
export function freshDataDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'liveview-e2e-'));
  if (dataDirs.size === 0) {
    process.once('exit', () => dataDirs.forEach((made) => rmSync(made, { recursive: true, force: true })));
  }
  dataDirs.add(dir);
  return dir;
}

export function liveviewCommand(port: number): string {
  return [BINARY, ...liveviewArgs(port, freshDataDir())].map((a) => JSON.stringify(a)).join(' ');
}

/** Adds an operator account to a data directory with `liveview operators add`, the
 * password piped in as a person would. */
export function addOperator(dataDir: string, name: string, role: string, password: string): void {
  const result = spawnSync(BINARY, ['operators', 'add', name, '--role', role, '--data', dataDir], {
    input: `${password}\n`,
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`operators add ${name} failed: ${result.stderr}`);
}

/** Starts `liveview` (with `extra` flags) and resolves once its dashboard answers /healthz. */
export async function startLiveview(port: number, dataDir: string, extra: string[] = []): Promise<ChildProcess> {
  const child = spawn(BINARY, [...liveviewArgs(port, dataDir), ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`liveview exited early:\n${output}`);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (response.ok) return child;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`liveview did not answer on port ${port}:\n${output}`);
}

/** Sends SIGTERM and waits for a clean exit. */
export async function stopLiveview(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  return exited;
}
