#!/usr/bin/env node
// ferry-control-plane: placeholder until the control-plane issue lands (gRPC ingest, HTTP API, MQTT).

const VERSION = '0.1.0';

const [command] = process.argv.slice(2);
if (command === 'version') {
  process.stdout.write(`${VERSION}\n`);
} else {
  process.stderr.write(
    'ferry-control-plane: not built yet. The agent (ferry-agent) buffers every message durably until the control plane exists.\n',
  );
  process.exitCode = command === undefined || command === 'help' || command === '--help' ? 0 : 2;
}
