// Builds the JS SDK's browser bundle (clients/js, the same esbuild call as
// its `npm run build`) and writes it to the file named by the first
// argument, or to stdout without one. `go generate ./server` runs it to
// refresh server/web/switchboard.min.js, which the binary embeds so that
// `go run ./cmd/switchboard serve` needs no JavaScript build step;
// TestEmbeddedSDKIsFresh compares the two. Needs `npm ci` in clients/js.
import { writeFileSync } from 'node:fs';
import { browserBundle } from '../../clients/js/scripts/bundle.mjs';

const { code } = await browserBundle();
if (process.argv[2]) writeFileSync(process.argv[2], code);
else process.stdout.write(code);
