// The campaign's RESP client: commands go out as arrays of bulk strings, and
// a reply is taken only once it is whole (a reply split across reads, nil,
// an error, an integer); a reply of a type no command here asks for is an
// error, not a guess.
import { describe, expect, it } from 'vitest';
import { encodeCommand, parseReply as parseBytes } from '../host/chaos/resp-workload.ts';

const parseReply = (text: string) => parseBytes(Buffer.from(text));

describe('the campaign RESP client', () => {
  it('encodes commands as arrays of bulk strings (byte lengths)', () => {
    expect(encodeCommand(['SET', 'k', 'vé'])).toBe('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nvé\r\n');
  });

  it('takes a reply only when it is whole, and says how much it used', () => {
    expect(parseReply('')).toBeNull();
    expect(parseReply('+OK')).toBeNull();
    expect(parseReply('+OK\r\n+OK\r\n')).toEqual({ reply: { t: '+', line: 'OK' }, used: 5 });
    expect(parseReply('-ERR wrong\r\n')).toEqual({ reply: { t: '-', line: 'ERR wrong' }, used: 12 });
    expect(parseReply(':1\r\n')).toEqual({ reply: { t: ':', line: '1' }, used: 4 });
    expect(parseReply('$-1\r\n')).toEqual({ reply: { t: '$', value: null }, used: 5 });
    expect(parseReply('$5\r\nhel')).toBeNull();
    expect(parseReply('$5\r\nhello\r')).toBeNull();
    expect(parseReply('$5\r\nhello\r\n:2\r\n')).toEqual({ reply: { t: '$', value: 'hello' }, used: 11 });
    expect(parseReply('$0\r\n\r\n')).toEqual({ reply: { t: '$', value: '' }, used: 6 });
    // lengths are bytes: "vé" is 3
    expect(parseReply('$3\r\nvé\r\n')).toEqual({ reply: { t: '$', value: 'vé' }, used: 9 });
    expect(parseReply('$3\r\nv')).toBeNull();
  });

  it('refuses replies it never asks for, and bad lengths', () => {
    expect(() => parseReply('*1\r\n$1\r\na\r\n')).toThrow(/unexpected RESP reply/);
    expect(() => parseReply('$x\r\n')).toThrow(/bad bulk length/);
    expect(() => parseReply('$-2\r\n')).toThrow(/bad bulk length/);
    expect(() => parseReply('$1.5\r\n')).toThrow(/bad bulk length/);
  });
});
