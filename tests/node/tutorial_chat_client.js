// tutorial_chat_client.js: the chat tutorial's client (seed 003, the Vue
// component's enter / sendMsg / onMessage) with the DOM taken away, on the
// Node `ws` package. It keeps the tutorial's logic as written so roomd is
// tested against what real tutorial users run; it prints each line the page
// would add to its list, then the final num.
//
// usage: node tutorial_chat_client.js URL NAME ROOMID [--say TEXT] [--wait-num N] [--for MS]
//   --say TEXT    type TEXT and press send once the room holds --wait-num people
//   --for MS      close the page MS milliseconds after it said its TEXT (or, without
//                 --say, after it started; default 3000), so a slow start of the
//                 other page cannot make it leave before they met
'use strict'
const WebSocket = require('ws')

const argv = process.argv.slice(2)
if (argv.length < 3) {
  console.error('usage: node tutorial_chat_client.js URL NAME ROOMID ' +
    '[--say TEXT] [--wait-num N] [--for MS]')
  process.exit(2)
}
const opt = { say: null, waitNum: 1, for: 3000 }
for (let i = 3; i < argv.length; i += 2) {
  if (argv[i] === '--say') opt.say = argv[i + 1]
  else if (argv[i] === '--wait-num') opt.waitNum = Number(argv[i + 1])
  else if (argv[i] === '--for') opt.for = Number(argv[i + 1])
}

// The component's data and methods, as in the tutorial.
const app = {
  url: argv[0],
  name: argv[1],
  roomid: argv[2],
  message: '',
  lists: [],
  num: 0,
  isShow: true,
  ws: null,
  heartbeats: 0,
  said: false,
  leaving: false,

  initWS () {
    this.ws = new WebSocket(this.url)
    this.ws.onopen = () => this.enter()
    this.ws.onmessage = (event) => this.onMessage(event)
    this.ws.onclose = (event) => this.onClose(event)
    this.ws.onerror = (err) => console.log('error ' + err.message)
  },

  enter () {
    if (this.name.trim() === '') {
      console.log('用户名不得为空')
      return
    }
    this.isShow = false
    this.ws.send(JSON.stringify({
      event: 'enter',
      message: this.name,
      roomid: this.roomid
    }))
  },

  sendMsg () {
    this.show(this.name + ':' + this.message)
    this.ws.send(JSON.stringify({
      event: 'message',
      message: this.message,
      name: this.name
    }))
    this.message = ''
  },

  onMessage (event) {
    if (this.isShow) return
    const obj = JSON.parse(event.data)
    switch (obj.event) {
      case 'noAuth':
        break
      case 'enter':
        this.show('欢迎' + obj.message + '加入聊天室')
        break
      case 'out':
        this.show(obj.name + '离开了聊天室')
        break
      case 'heartbeat':
        this.heartbeats++
        this.ws.send(JSON.stringify({
          event: 'heartbeat',
          message: 'pong'
        }))
        break
      default:
        if (obj.name !== this.name) {
          this.show(obj.name + ':' + obj.message)
        }
    }
    this.num = obj.num
    // The user types once the people they expect are in.
    if (opt.say !== null && !this.said && this.num >= opt.waitNum) {
      this.said = true
      this.message = opt.say
      this.sendMsg()
      leaveIn(opt.for)
    }
  },

  onClose (event) {
    if (!this.leaving) console.log('closed by server ' + event.code + ' ' + event.reason)
    console.log('heartbeats ' + this.heartbeats)
    console.log('num ' + this.num)
  },

  show (line) {
    this.lists.push(line)
    console.log(line)
  }
}

function leaveIn (ms) {
  setTimeout(() => {
    app.leaving = true
    app.ws.close()
  }, ms)
}

app.initWS()
if (opt.say === null) leaveIn(opt.for)
