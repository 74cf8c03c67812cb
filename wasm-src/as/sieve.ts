// sieve: sieve of Eratosthenes over one large byte array (memory heavy).
//
//   sieve.wasm [n]      (default n = 700000)
//
// Allocates a Uint8Array of n + 1 bytes, strikes out composites, then counts
// the primes <= n and sums them.  Prints "sieve(n) = <count> primes, sum <sum>".
import { argSize, println } from "./common";

function sieve(n: i32, flags: Uint8Array): void {
  for (let i = 2; i <= n / i; i++) {
    if (flags[i] == 0) {
      for (let j = i * i; j <= n; j += i) flags[j] = 1;
    }
  }
}

function countPrimes(n: i32, flags: Uint8Array): u32 {
  let count: u32 = 0;
  for (let i = 2; i <= n; i++) if (flags[i] == 0) count++;
  return count;
}

function sumPrimes(n: i32, flags: Uint8Array): u64 {
  let sum: u64 = 0;
  for (let i = 2; i <= n; i++) if (flags[i] == 0) sum += <u64>i;
  return sum;
}

const n = argSize(700000, "sieve.wasm [n]");
if (n == i32.MAX_VALUE) {
  process.stderr.write("sieve: n too large\n");
  process.exit(2);
}
const flags = new Uint8Array(n + 1);
sieve(n, flags);
println(
  "sieve(" + n.toString() + ") = " + countPrimes(n, flags).toString() +
  " primes, sum " + sumPrimes(n, flags).toString()
);
