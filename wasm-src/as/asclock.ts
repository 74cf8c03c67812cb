// asclock: test helper that reads the clocks and the PRNG that
// @assemblyscript/wasi-shim provides (for record/replay).
//
//   asclock.wasm [rounds]   (default rounds = 50)
//
// For `rounds` iterations, reads
//   * Date.now()        -> clock_time_get(REALTIME, precision 1 ms), in ms
//   * process.hrtime()  -> clock_time_get(MONOTONIC, precision 0), in ns
//   * Math.random()     -> xoroshiro128+ that the shim seeds once, on the first
//                          call, from random_get (8 bytes)
// and mixes them into a running 64-bit hash (xxhash64-style rounds), then
// prints
//
//   asclock: <rounds> rounds ; mix 0x<16 hex digits>
//
// The mix differs from run to run on a live host by design (and is
// reproducible under replay).  Control flow does not depend on the clock or
// random values (fixed-width hex output), so the instruction count of a run
// depends only on argv.
//
// Imports: args_get, args_sizes_get, fd_write, clock_time_get, random_get,
// proc_exit.
import { argSize, println } from "./common";

const P1: u64 = 0x9E3779B185EBCA87;
const P2: u64 = 0xC2B2AE3D27D4EB4F;

// @ts-ignore: decorator
@inline function mix(h: u64, v: u64): u64 {
  h ^= rotl<u64>(v * P2, 31) * P1;
  return rotl<u64>(h, 27) * P1 + P2;
}

function avalanche(h: u64): u64 {
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P1;
  h ^= h >> 32;
  return h;
}

/** Lowercase 16-digit hex with a 0x prefix; no value-dependent branches. */
function hex64(v: u64): string {
  let s = "0x";
  for (let i = 60; i >= 0; i -= 4) {
    const d = <i32>((v >> <u64>i) & 0xf);
    // '0'..'9' = 48..57, 'a'..'f' = 97..102; branch-free select.
    s += String.fromCharCode(48 + d + (39 & -<i32>(d > 9)));
  }
  return s;
}

const rounds = argSize(50, "asclock.wasm [rounds]");

let h: u64 = 0x27D4EB2F165667C5 ^ <u64>rounds;
for (let i = 0; i < rounds; i++) {
  const wall = <u64>Date.now();
  const mono = process.hrtime();
  const rnd = reinterpret<u64>(Math.random());
  h = mix(h, wall);
  h = mix(h, mono);
  h = mix(h, rnd);
  h = mix(h, <u64>i);
}
h = avalanche(h);

println("asclock: " + rounds.toString() + " rounds ; mix " + hex64(h));
