// Starts kinesalite on 127.0.0.1 only (its CLI has no host flag and binds
// every interface). Run by emulators.StartKinesis as `node -e <this file>`;
// everything comes from the environment, because Node resolves require()
// relative to the script, not to where install.sh put the module:
//
//   KINESALITE_MODULE   path of the installed kinesalite package (required)
//   KINESALITE_PORT     port to listen on (required)
//   KINESALITE_SHARD_LIMIT  open shards allowed across all streams (default 10000)
'use strict'

const modulePath = process.env.KINESALITE_MODULE
const port = Number(process.env.KINESALITE_PORT)
if (!modulePath || !(port > 0)) {
  console.error('kinesalite.js: set KINESALITE_MODULE and KINESALITE_PORT')
  process.exit(2)
}

// kinesalite rethrows the error of a request the client aborted before
// sending all of its body (index.js: req.on('error', function(err) { throw
// err })), which kills the process: a Go client whose context ends during a
// PutRecords upload would take the emulator down for every other test. Such
// a request has no one left to answer; ignore it, and die of anything else.
process.on('uncaughtException', (err) => {
  if (err && err.code === 'ECONNRESET' && err.message === 'aborted') return
  console.error(err)
  process.exit(1)
})

const kinesalite = require(modulePath)
const server = kinesalite({
  // Streams become ACTIVE (and splits, merges, deletes finish) after 50 ms
  // instead of kinesalite's default 500 ms.
  createStreamMs: 50,
  deleteStreamMs: 50,
  updateStreamMs: 50,
  // The limit counts the open shards of every stream in the process: tests
  // share one kinesalite and each creates its own streams.
  shardLimit: Number(process.env.KINESALITE_SHARD_LIMIT) || 10000,
})
server.on('error', (err) => {
  console.error('kinesalite.js:', err.message)
  process.exit(1)
})
server.listen(port, '127.0.0.1', () => {
  console.log('kinesalite listening on 127.0.0.1:' + port)
})
