// Type declarations of roomd-client (roomd-client.js). The protocol is roomd-protocol(7).

/** The events the server sends about a room, as it sends them. */
export interface MessageEvent {
  event: 'message';
  name: string;
  message: string;
  roomid: string;
  /** Unique id the server gave the message. */
  id: string;
  /** When the server accepted it, in milliseconds since the epoch. */
  ts: number;
  /** Its position in the room: 1, 2, 3... in each epoch. */
  offset: number;
  num?: number;
}

export interface EnterEvent {
  event: 'enter';
  name: string;
  message: string;
  roomid: string;
  num?: number;
}

export interface OutEvent {
  event: 'out';
  name: string;
  roomid: string;
  num?: number;
}

/** Where a room is: the offset of a message within an epoch. */
export interface Position {
  offset: number;
  epoch: string;
}

/**
 * Messages the application will never see: the server said
 * {"recovered":false}. `from`..`to` are the lost offsets of `epoch` where
 * known; `newEpoch` is set when the room's history restarted, and the new
 * epoch's messages the server still holds follow the gap.
 */
export interface Gap {
  roomid: string;
  epoch: string | null;
  from: number | null;
  to: number | null;
  newEpoch: string | null;
}

export interface WhoAnswer {
  members: string[];
  num?: number;
}

export interface HistoryPage {
  /** Oldest first. */
  messages: MessageEvent[];
  /** The room's position now. */
  offset: number;
  epoch: string;
}

/** What a WebSocket constructor must offer: the browser's, Node 22's, or the ws package's. */
export interface WebSocketLike {
  readonly bufferedAmount: number;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: { data: any }) => any) | null;
  onclose: ((ev: { code: number; reason: string }) => any) | null;
  onerror: ((ev: any) => any) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The part of the Web Storage API the client uses (sessionStorage, localStorage, memoryStorage()). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ReconnectOptions {
  /** First delay, in ms (default 500); it doubles with each failed attempt. */
  minDelay?: number;
  /** Longest delay, in ms (default 20000). */
  maxDelay?: number;
  /** 0..1: how much of each delay is random (default 0.5: between half and all of it). */
  jitter?: number;
}

export interface ClientOptions {
  /** The name to enter with; with a token the server uses the token's "sub" instead. */
  name?: string;
  /** A JWT for ?token= (under auth optional or required). */
  token?: string;
  /** Returns a fresh token: called before the token expires (refresh) and to reconnect after 4001. */
  getToken?: () => string | Promise<string>;
  /** Refresh this many ms before the token's exp (default 30000, at most half its life). */
  refreshMargin?: number;
  /** The WebSocket to use (default: globalThis.WebSocket; on Node < 22, pass the ws package's). */
  WebSocket?: WebSocketConstructor;
  reconnect?: ReconnectOptions;
  /** Where rooms' positions are kept so a new client (a reloaded page) recovers too. */
  storage?: StorageLike;
  /** Prefix of the storage keys (default "roomd-client:"). */
  storagePrefix?: string;
  /** Messages that may wait for the connection (default 100); more are refused with queue_full. */
  maxQueued?: number;
  /** Messages held per room while it catches up (default 10000). */
  maxBuffered?: number;
  /** Bytes the socket may hold unsent before sends wait in the queue (default 1 MiB). */
  maxSocketBuffer?: number;
  /** Ping a server silent for this long, in ms (default 25000). */
  pingInterval?: number;
  /** Reconnect when it stays silent this much longer (default 10000). */
  pongTimeout?: number;
  /** How long who() and history() wait for their answer, in ms (default 10000). */
  queryTimeout?: number;
  /** How long the handshake, an enter or a token refresh may wait for the server before the client reconnects (default 5000). */
  answerTimeout?: number;
}

export type ClientState = 'disconnected' | 'connecting' | 'connected';
export type RoomState = 'connecting' | 'joining' | 'joined' | 'left';

export interface Disconnected {
  /** The WebSocket close code (1006: the connection broke; 4001: the token). */
  code: number;
  reason: string;
  /** Whether the client will try again, and in how many ms. */
  reconnect: boolean;
  delay: number | null;
}

/** An error the server sent, or one of the client's own (queue_full, left, not_joined, timeout, disconnected, auth, token, no_auth). */
export declare class RoomdError extends Error {
  constructor(code: string, message?: string, room?: string);
  readonly code: string;
  /** The room it is about, when known. */
  readonly room: string | null;
}

type Listener<A extends unknown[]> = (...args: A) => void;

interface RoomEvents {
  message: [ev: MessageEvent];
  enter: [ev: EnterEvent];
  out: [ev: OutEvent];
  gap: [gap: Gap];
  state: [state: RoomState, previous: RoomState];
  error: [err: RoomdError];
}

interface ClientEvents {
  state: [state: ClientState, previous: ClientState];
  connected: [];
  disconnected: [info: Disconnected];
  error: [err: RoomdError];
}

export declare class Room {
  private constructor();
  readonly client: RoomdClient;
  readonly id: string;
  readonly state: RoomState;
  /** The member count the server last said. */
  readonly num: number | null;
  /** The last message handed to the application (or skipped on entering), or null. */
  readonly position: Position | null;
  /** Listen; returns a function that stops listening. */
  on<K extends keyof RoomEvents>(event: K, fn: Listener<RoomEvents[K]>): () => void;
  once<K extends keyof RoomEvents>(event: K, fn: Listener<RoomEvents[K]>): () => void;
  off<K extends keyof RoomEvents>(event: K, fn: Listener<RoomEvents[K]>): void;
  /** Say text in the room: sent now or queued; false (and an error event) when refused. */
  send(text: string): boolean;
  who(): Promise<WhoAnswer>;
  history(opts?: { before?: number; limit?: number }): Promise<HistoryPage>;
  leave(): void;
}

export declare class RoomdClient {
  /** url: ws://host:port/path of a chat route, or a function returning one for each attempt. */
  constructor(url: string | (() => string), options?: ClientOptions);
  readonly state: ClientState;
  readonly name: string | null;
  /** The token in use (after refreshes, the newest). */
  readonly token: string | null;
  readonly rooms: ReadonlyMap<string, Room>;
  on<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): () => void;
  once<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): () => void;
  off<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): void;
  /** Start connecting; the client reconnects by itself until close(). */
  connect(): void;
  /** Close: no reconnect, no timer left; rooms keep their positions for a later connect(). */
  close(): void;
  /** Drop the connection and open a new one now. */
  reconnect(): void;
  /** Enter a room; history: the last K messages to hand over on entering (default 0). */
  join(roomid: string, opts?: { history?: number }): Room;
}

/** The "exp" claim of a JWT in seconds since the epoch, or null. */
export declare function tokenExpiry(token: string): number | null;

/** A StorageLike over a Map, for Node services and tests. */
export declare function memoryStorage(): StorageLike;
