// tutorial_broadcast_client.js: the simplest tutorial's client (seed 001
// client.js; seed 002 also sends a Buffer) on the Node `ws` package: send a
// message once open, print every message received. Standing in for the
// page's send button, each stdin line is an action:
//   send TEXT   send TEXT as a text message
//   bin HEX     send the bytes HEX as a binary message
//   close       close the connection
//
// usage: node tutorial_broadcast_client.js URL TEXT
'use strict'
const WebSocket = require('ws')
const readline = require('readline')

if (process.argv.length < 4) {
  console.error('usage: node tutorial_broadcast_client.js URL TEXT')
  process.exit(2)
}
const ws = new WebSocket(process.argv[2])

// 打开WebSocket连接后立刻发送一条消息:
ws.on('open', function () {
  console.log('[CLIENT] open()')
  ws.send(process.argv[3])
})

// 响应收到的消息:
ws.on('message', function (message, isBinary) {
  if (isBinary) console.log(`[CLIENT] Received binary: ${message.toString('hex')}`)
  else console.log(`[CLIENT] Received: ${message}`)
})

ws.on('error', function (err) {
  console.log('error: ', err.message)
})

ws.on('close', function (code) {
  console.log(`[CLIENT] close ${code}`)
  process.exit(0)
})

readline.createInterface({ input: process.stdin }).on('line', function (line) {
  const sp = line.indexOf(' ')
  const cmd = sp < 0 ? line : line.slice(0, sp)
  const arg = sp < 0 ? '' : line.slice(sp + 1)
  if (cmd === 'send') ws.send(arg)
  else if (cmd === 'bin') ws.send(Buffer.from(arg, 'hex'))
  else if (cmd === 'close') ws.close()
})
