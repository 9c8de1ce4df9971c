// A restricted unpickler: a small stack machine that understands the opcodes a PyTorch state dict uses
// (protocols 2–5: containers, integers, floats, strings, bytes, memo, GLOBAL/STACK_GLOBAL, REDUCE,
// BUILD, BINPERSID) and nothing else. It never evaluates anything from the file: GLOBAL resolves a
// (module, name) pair through the caller's allow-list, which either returns one of *our* functions or
// throws an error naming the global; REDUCE can only call such functions. Unknown opcodes are errors.
//
// Every length is checked against the bytes left before anything is decoded, and each opcode consumes at
// least one byte, so a hostile pickle cannot loop or allocate more than its own size.
// Also: a minimal protocol-2 pickle *writer* for the state dicts pth.ts writes.

/** A Python tuple. */
export class PickleTuple {
  constructor(readonly items: readonly PickleValue[]) {}
}

/** A Python dict (or OrderedDict); keys keep their insertion order. */
export class PickleDict {
  readonly entries = new Map<PickleKey, PickleValue>();
}

/** A global the allow-list resolved, with the function REDUCE may call (our code, not the file's). */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly call?: (args: readonly PickleValue[]) => PickleValue,
  ) {}

  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** Something an allowed function built (e.g. a tensor reference). */
export interface PickleObject {
  readonly pickleKind: string;
}

export type PickleKey = string | number | bigint | boolean | null;
export type PickleValue = PickleKey | Uint8Array | PickleTuple | PickleValue[] | PickleDict | PickleGlobal | PickleObject;

export interface UnpickleOptions {
  /** Resolves GLOBAL / STACK_GLOBAL; throws to refuse. */
  resolveGlobal(module: string, name: string): PickleGlobal;
  /** BINPERSID's handler; throws to refuse. */
  persistentLoad?(pid: PickleValue): PickleValue;
  /** Builds the error for a malformed pickle (the caller names the file). */
  error(message: string): Error;
}

const MARK = Symbol('mark');

const OP_NAMES: Record<number, string> = {
  0x81: 'NEWOBJ',
  0x92: 'NEWOBJ_EX',
  0x69: 'INST',
  0x6f: 'OBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x50: 'PERSID',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

export function unpickle(data: Uint8Array, opts: UnpickleOptions): PickleValue {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = data.byteLength;
  const stack: (PickleValue | typeof MARK)[] = [];
  const memo = new Map<number, PickleValue>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const latin1 = new TextDecoder('latin1');
  let p = 0;
  const fail = (msg: string): Error => opts.error(`pickle: ${msg} (at byte ${p})`);

  const need = (k: number, what: string): void => {
    if (k < 0 || p + k > n) throw fail(`${what} needs ${k} bytes, ${n - p} left`);
  };
  const u8 = (): number => {
    need(1, 'operand');
    return data[p++]!;
  };
  const u16 = (): number => {
    need(2, 'operand');
    const v = dv.getUint16(p, true);
    p += 2;
    return v;
  };
  const u32 = (): number => {
    need(4, 'operand');
    const v = dv.getUint32(p, true);
    p += 4;
    return v;
  };
  const i32 = (): number => {
    need(4, 'operand');
    const v = dv.getInt32(p, true);
    p += 4;
    return v;
  };
  const u64 = (): number => {
    need(8, 'operand');
    const v = dv.getBigUint64(p, true);
    p += 8;
    if (v > BigInt(n)) throw fail(`length ${v} exceeds the pickle`);
    return Number(v);
  };
  const bytes = (k: number, what: string): Uint8Array => {
    need(k, what);
    const b = data.subarray(p, p + k);
    p += k;
    return b;
  };
  const str = (k: number): string => {
    try {
      return utf8.decode(bytes(k, 'string'));
    } catch (e) {
      if (e instanceof TypeError) throw fail('string is not valid UTF-8');
      throw e;
    }
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, p);
    if (end < 0) throw fail('unterminated line');
    const s = latin1.decode(data.subarray(p, end));
    p = end + 1;
    return s;
  };
  const pop = (): PickleValue => {
    const v = stack.pop();
    if (v === undefined) throw fail('stack underflow');
    if (v === MARK) throw fail('unexpected mark');
    return v;
  };
  const top = (): PickleValue => {
    const v = stack[stack.length - 1];
    if (v === undefined) throw fail('stack underflow');
    if (v === MARK) throw fail('unexpected mark');
    return v;
  };
  const popMark = (): PickleValue[] => {
    let i = stack.length - 1;
    while (i >= 0 && stack[i] !== MARK) i--;
    if (i < 0) throw fail('no mark on the stack');
    const items = stack.splice(i + 1) as PickleValue[];
    stack.pop();
    return items;
  };
  const key = (k: PickleValue): PickleKey => {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return k;
    throw fail('dict key is not a string or number');
  };
  const setItems = (d: PickleValue, items: PickleValue[]): void => {
    if (!(d instanceof PickleDict)) throw fail('SETITEM(S) on something that is not a dict');
    if (items.length % 2 !== 0) throw fail('odd number of items for a dict');
    for (let i = 0; i < items.length; i += 2) d.entries.set(key(items[i]!), items[i + 1]!);
  };
  const memoGet = (i: number): PickleValue => {
    const v = memo.get(i);
    if (v === undefined) throw fail(`memo entry ${i} is not set`);
    return v;
  };
  const long = (b: Uint8Array): number | bigint => {
    if (b.byteLength === 0) return 0;
    let v = 0n;
    for (let i = b.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.byteLength - 1]! & 0x80) v -= 1n << BigInt(8 * b.byteLength);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const global = (module: string, name: string): PickleGlobal => opts.resolveGlobal(module, name);

  while (p < n) {
    const op = data[p++]!;
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw fail('pickle protocol above 5');
        break;
      case 0x95: // FRAME: an 8-byte length; frames are only a buffering hint
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) throw fail(`STOP with ${stack.length} values on the stack`);
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        if (stack.pop() === undefined) throw fail('stack underflow');
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(bytes(u8(), 'LONG1')));
        break;
      case 0x8b: {
        // LONG4
        const k = i32();
        stack.push(long(bytes(k, 'LONG4')));
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8, 'BINFLOAT');
        stack.push(dv.getFloat64(p, false));
        p += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(u64()));
        break;
      case 0x54: {
        // BINSTRING (Python 2 str)
        const k = i32();
        stack.push(latin1.decode(bytes(k, 'BINSTRING')));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(bytes(u8(), 'SHORT_BINSTRING')));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32(), 'BINBYTES'));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8(), 'SHORT_BINBYTES'));
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64(), 'BINBYTES8'));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PickleTuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new PickleTuple(popMark()));
        break;
      case 0x85: // TUPLE1
        stack.push(new PickleTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push(new PickleTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(new PickleTuple([a, b, c]));
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) throw fail('APPEND to something that is not a list');
        l.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) throw fail('APPENDS to something that is not a list');
        for (const v of items) l.push(v);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new PickleDict());
        break;
      case 0x64: {
        // DICT
        const d = new PickleDict();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL operands are not strings');
        stack.push(global(module, name));
        break;
      }
      case 0x52: {
        // REDUCE: callable(*args); only our own functions behind allowed globals can be called.
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleGlobal)) throw fail('REDUCE on something that is not an allowed global');
        if (!(args instanceof PickleTuple)) throw fail(`REDUCE of ${fn.qualifiedName} with arguments that are not a tuple`);
        if (fn.call === undefined) throw fail(`${fn.qualifiedName} is not callable here`);
        stack.push(fn.call(args.items));
        break;
      }
      case 0x62: {
        // BUILD: only a dict's __setstate__ (OrderedDict's _metadata), which carries nothing we use.
        pop();
        if (!(top() instanceof PickleDict)) throw fail('BUILD on something that is not a dict');
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (opts.persistentLoad === undefined) throw fail('persistent ids are not allowed here');
        stack.push(opts.persistentLoad(pid));
        break;
      }
      default: {
        const name = OP_NAMES[op];
        const what = name !== undefined ? `opcode ${name}` : `unknown opcode 0x${op.toString(16).padStart(2, '0')}`;
        throw fail(`${what} is not allowed in a state dict`);
      }
    }
  }
  throw fail('no STOP opcode before the end');
}

// ---------------------------------------------------------------------------------------------------
// Writer (protocol 2).

export class PickleWriter {
  private buf = new Uint8Array(4096);
  private len = 0;
  private readonly enc = new TextEncoder();

  private ensure(k: number): void {
    if (this.len + k <= this.buf.byteLength) return;
    let cap = this.buf.byteLength * 2;
    while (cap < this.len + k) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }

  private byte(...bs: number[]): this {
    this.ensure(bs.length);
    for (const b of bs) this.buf[this.len++] = b;
    return this;
  }

  private raw(b: Uint8Array): this {
    this.ensure(b.byteLength);
    this.buf.set(b, this.len);
    this.len += b.byteLength;
    return this;
  }

  private u32(v: number): this {
    return this.byte(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }

  proto(v: number): this {
    return this.byte(0x80, v);
  }

  global(module: string, name: string): this {
    return this.byte(0x63).raw(this.enc.encode(`${module}\n${name}\n`));
  }

  put(i: number): this {
    return i < 256 ? this.byte(0x71, i) : this.byte(0x72).u32(i);
  }

  get(i: number): this {
    return i < 256 ? this.byte(0x68, i) : this.byte(0x6a).u32(i);
  }

  mark(): this {
    return this.byte(0x28);
  }

  /** A tuple of the `count` values pushed since the mark (TUPLE) or directly before (count ≤ 3). */
  tuple(count: number): this {
    if (count === 0) return this.byte(0x29);
    if (count <= 3) return this.byte(0x84 + count);
    return this.byte(0x74);
  }

  int(v: number): this {
    if (!Number.isSafeInteger(v)) throw new RangeError(`pickle: ${v} is not a safe integer`);
    if (v >= 0 && v < 256) return this.byte(0x4b, v);
    if (v >= 0 && v < 65536) return this.byte(0x4d, v & 0xff, v >>> 8);
    if (v >= -0x80000000 && v <= 0x7fffffff) return this.byte(0x4a).u32(v >>> 0);
    // LONG1: little-endian two's complement, minimal length
    let b = BigInt(v);
    const out: number[] = [];
    for (;;) {
      out.push(Number(b & 0xffn));
      b >>= 8n;
      const last = out[out.length - 1]!;
      if ((b === 0n && (last & 0x80) === 0) || (b === -1n && (last & 0x80) !== 0)) break;
    }
    return this.byte(0x8a, out.length, ...out);
  }

  str(s: string): this {
    const b = this.enc.encode(s);
    return this.byte(0x58).u32(b.byteLength).raw(b);
  }

  bool(v: boolean): this {
    return this.byte(v ? 0x88 : 0x89);
  }

  reduce(): this {
    return this.byte(0x52);
  }

  binpersid(): this {
    return this.byte(0x51);
  }

  setitems(): this {
    return this.byte(0x75);
  }

  stop(): Uint8Array {
    this.byte(0x2e);
    return this.buf.slice(0, this.len);
  }
}
