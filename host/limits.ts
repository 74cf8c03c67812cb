// Every limit of the host, in one place.
//
// Each constant bounds one queue, buffer, map, frame or wait; its doc comment
// says what it bounds and its unit (also the last word of its name: _BYTES,
// _MS, _US, _PAGES, _SLOTS; a name without a unit counts items). The files
// that use a limit import it from here (most keep their old local name as an
// alias), so a limit is changed in one line and checked against the others.
//
// Limits depend on each other: a NIC message must fit a client frame, a log
// entry a log frame, a log frame or a snapshot chunk a peer frame, and so on.
// `checkLimits()` asserts every such dependency when a host starts, so a
// change that breaks one stops the host at once instead of failing later on
// the wire (a frame the receiver refuses, a VM left without a backup).
//
// README "Limits" shows this file as a table; test/limits.test.ts keeps the
// two in step.
//
// This file imports nothing, so that any module may import it without a cycle.

// ---- Frames on the wire (host/cluster/wire.ts) ----

/** Bytes of a wire frame's header (body length and CRC-32) before its msgpack body. */
export const WIRE_HEADER_BYTES = 8;
/** The largest frame body on the log channel between hosts, in bytes (log frames, snapshot and module chunks). */
export const PEER_FRAME_BYTES_MAX = 8 * 1024 * 1024;
/** The largest frame body a client may send or receive on the client port, in bytes (a module to start, or a message). */
export const CLIENT_FRAME_BYTES_MAX = 32 * 1024 * 1024;
/** The largest frame body a client may send before it is authenticated, in bytes (an 'auth' is under 100 bytes). */
export const CLIENT_AUTH_FRAME_BYTES_MAX = 1024;
/** The time a client has to authenticate after its connection is accepted, in ms. */
export const CLIENT_AUTH_MS = 5000;
/** Bytes of a module one 'mod-chunk' peer frame carries at most. */
export const MODULE_CHUNK_BYTES = 4 * 1024 * 1024;
/** Bytes of guest memory one 'snapchunk' peer frame carries at most (a snapshot is never one frame, and a heartbeat waits behind two chunks at most). */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/** Bytes queued on a peer link above which a snapshot's next chunk waits for the socket to drain. */
export const SNAPSHOT_QUEUED_BYTES_MAX = SNAPSHOT_CHUNK_BYTES;
/** Snapshots a host receives at once (a newer one of the same VM replaces the older; beyond, the oldest is dropped). */
export const SNAPSHOTS_IN_MAX = 4;
/** A module and its metered form of at most this many bytes together ride inside the 'backup' peer request itself. */
export const INLINE_SHIP_BYTES_MAX = 1024 * 1024;
/** Arbiter locations whose cluster id a host remembers in its data directory (host/cluster/cluster-memory.ts). */
export const CLUSTER_MEMORY_MAX = 64;
/** Peers refused for holding another cluster's id (peer and id), remembered so that each is said in the log once. */
export const OTHER_CLUSTER_NOTES_MAX = 64;
/** Outputs per VM an FtClient remembers (sequence number, generation, payload hash) to tell a duplicate from a divergence. */
export const CLIENT_RECENT_OUTPUTS_MAX = 100_000;
/** Connection ids in one block a host takes from the arbiter (host/cluster/conn-ids.ts); a host takes the next before its block runs out. */
export const CONN_BLOCK_IDS = 4096;
/** The most items a list in a peer message may hold (input acks, needed modules, ports). */
export const PEER_LIST_MAX = 65_536;
/**
 * Bytes a peer message carries besides its payload (type, VM name, generation,
 * offsets, ...), kept free in every frame when a payload's bound is checked
 * against a frame's. VM names are short (NAME_RE), so 64 KiB is ample.
 */
export const FRAME_ENVELOPE_BYTES = 64 * 1024;

// ---- Log files and log frames (host/log/format.ts, host/log/writer.ts) ----

/** Bytes of a log file's header (magic, version, flags). */
export const LOG_HEADER_BYTES = 16;
/** Bytes of a log frame's header (payload length and CRC-32). */
export const LOG_FRAME_HEADER_BYTES = 8;
/** The largest log frame, in bytes: a reader never allocates more for one frame. */
export const LOG_FRAME_BYTES_MAX = 1 << 20;
/** The largest first log frame (the start entry alone, with the guest's arguments and environment), in bytes. */
export const LOG_START_FRAME_BYTES_MAX = 16 << 20;
/** The most preopened directories a start entry names. */
export const LOG_PREOPENS_MAX = 64;
/** A log writer cuts a frame at this many payload bytes. */
export const LOG_FRAME_TARGET_BYTES = 64 * 1024;
/** A log writer cuts a frame at this many entries. */
export const LOG_FRAME_ENTRIES_MAX = 4096;
/** The most bytes one input, output or random log entry carries (larger ones are split). */
export const LOG_ENTRY_CHUNK_BYTES = 256 * 1024;
/** A replica flushes its log to the backup once this many bytes are pending. */
export const REPLICA_FRAME_FLUSH_BYTES = 512 * 1024;
/** A batch of interrupts delivered together is flushed at this many bytes (the stall is checked at each flush). */
export const REPLICA_BATCH_FLUSH_BYTES = 64 * 1024;
// The primary's worker decides the stall at each flush, from what its host published as unacknowledged and
// what it posted that the host has not taken yet, so the log is at most one flush past the bound (replay/engine.ts logStall).
/** Log the backup has not acknowledged, in bytes, at which the primary stalls (it resumes at half); `--unacked-log-max`. */
export const UNACKED_LOG_BYTES_MAX = 32 * 1024 * 1024;
/** Stream connections whose end-of-stream was delivered, remembered per replica so that a late copy of their input is dropped; of those the guest has not closed (a raw reactor never does), only the newest this many keep their output offset on the hosts and their send window in the NIC; and the NIC remembers this many connections the guest closed whose peer never ended. */
export const STREAMS_DONE_MAX = 4096;

// ---- The guest's NIC and TCP (host/runtime/nic.ts, tcp-listen.ts, cluster/ingress.ts) ----

/** The largest NIC message, both ways, in bytes. Larger sends are refused (raw) or split (sockets). */
export const NIC_MESSAGE_BYTES_MAX = 64 * 1024;
/** Bytes of one connection the guest has not read, above which no more of it is taken (the client's TCP window closes). */
export const GUEST_UNREAD_BYTES_MAX = 1024 * 1024;
/** Bytes of the guest's output on one connection waiting for a client that does not read, above which that connection is reset. */
export const CLIENT_UNREAD_BYTES_MAX = 16 * 1024 * 1024;
/** The send window of a TCP client's connection, in bytes: the guest sends at most this much the client has not taken. */
export const SEND_WINDOW_BYTES = 1024 * 1024;
/** Messages of client-port and REST connections queued in the guest's NIC and not taken; past it (or NIC_QUEUE_BYTES_MAX) the next wait in the replica's inbox (see INPUT_INBOX_MAX). Part of the VM's state: the backup holds as many. */
export const NIC_QUEUE_MAX = 1024;
/** Bytes of those messages (see NIC_QUEUE_MAX): a snapshot's NIC image stays well within a peer frame. */
export const NIC_QUEUE_BYTES_MAX = 4 * 1024 * 1024;
/** The most bytes a MSG_WAITALL receive waits for (below GUEST_UNREAD_BYTES_MAX, so such a wait always ends). */
export const WAITALL_BYTES_MAX = 512 * 1024;
/** Connections `ftvm run --tcplisten` serves at once; a client past it is closed at once. */
export const TCPLISTEN_CONNS_MAX = 1024;
/** How long `ftvm run --tcplisten` waits at close for the guest's last sends and then for clients to close, in ms. */
export const TCPLISTEN_END_WAIT_MS = 2000;
/** Ports one VM may publish. */
export const PUBLISH_PORTS_MAX = 8;
/** Bytes a host has taken from one client's socket that the VM's backup does not have yet, above which it stops reading that socket. */
export const INGRESS_UNACKED_BYTES_MAX = 1024 * 1024;
/** TCP connections through published ports one host serves at once, all VMs together (more are reset at once). */
export const INGRESS_CONNS_MAX = 4096;
/** Published-port connections whose client ended its side while the guest has not, waiting at once per host (the oldest is reset). */
export const INGRESS_HALF_CLOSED_MAX = 4096;
/** Published-port connections one VM may have on one host. */
export const INGRESS_CONNS_PER_VM_MAX = 1024;
/** Outputs past a gap kept per published-port connection until the gap is filled; more reset the connection. */
export const INGRESS_OUT_OF_ORDER_MAX = 256;
/** A resend of the same input, or a request for missed output, is not repeated within this many ms. */
export const INGRESS_REPEAT_MS = 100;
/** How long a closed published-port connection is remembered, or a half-closed one waits for the guest's end, in ms. */
export const INGRESS_CLOSED_LINGER_MS = 60_000;
/** A published port that could not be bound is tried again after this many ms. */
export const INGRESS_BIND_RETRY_MS = 5000;

// ---- The host (host/cluster/host.ts) ----

/** How long a host waits for a peer to say which modules it needs, in ms. */
export const OFFER_TIMEOUT_MS = 10_000;
/** Modules a host receives from its peers at once. */
export const INCOMING_MODULES_MAX = 4;
/** A module being received that gets no chunk for this many ms is dropped. */
export const INCOMING_IDLE_MS = 60_000;
/** After a failed attempt to make a backup, the next one waits this many ms. */
export const BACKUP_RETRY_MS = 2000;
/** NIC outputs a replica keeps per VM for clients that come back on another host. */
export const RETAIN_MAX = 4096;
/** Bytes of NIC outputs a replica keeps per VM for clients that come back on another host. */
export const RETAIN_BYTES_MAX = 4 * 1024 * 1024;
/** A host silent this many ms (or five failure timeouts, if longer) is gone: its clients' connections are ended in the VMs. */
export const SLOT_GONE_MS_MIN = 10_000;
/** How often a primary's host tells the others how its VMs are doing, in ms. */
export const INFO_EVERY_MS = 250;
/** An authenticated client-port connection silent this many ms is closed (default of HostOptions.clientIdleMs). */
export const CLIENT_IDLE_MS = 60_000;
/** Client-port connections open at once per host, authenticated or not (default of HostOptions.clientConnsMax). */
export const CLIENT_CONNS_MAX = 1024;
/** Client-port connections open at once from one remote address (default of HostOptions.clientConnsPerAddressMax). */
export const CLIENT_CONNS_PER_ADDRESS_MAX = 256;
/** Connections whose serving host a host remembers (those resumed somewhere). */
export const CONN_OWNERS_MAX = 65_536;
/** VMs a client's resume may name in "seen". */
export const RESUME_VMS_MAX = 4096;
/** How often a host looks for client-port connections past their authentication time or idle too long, in ms. */
export const CLIENT_SWEEP_MS = 250;
/** An API connection nobody read from or wrote on this many ms is closed. */
export const API_CONN_IDLE_MS = 10 * 60_000;
/** How long a host waits for the primary's host to answer a forwarded request, in ms. */
export const ADMIN_TIMEOUT_MS = 5000;
/** Outputs an API connection keeps for its reader. */
export const API_BOX_MAX = 10_000;
/** Bytes of the outputs an API connection keeps for its reader (the oldest are dropped beyond it, or beyond API_BOX_MAX). */
export const API_BOX_BYTES_MAX = 4 * 1024 * 1024;
/** API connections open on a host at once (POST /v1/connections past it: FTVM_ERR_UNAVAILABLE). */
export const API_CONNECTIONS_MAX = 1024;
/** Names of deleted VMs a host remembers at once, to drop their late messages (the oldest are forgotten; the arbiter keeps them stopped). */
export const TOMBSTONES_MAX = 65_536;
/** Requests a host waits for another host to answer at once (forwarded admin operations and REST sends). */
export const ADMIN_WAITS_MAX = 4096;
/**
 * How long a live migration may take in all, in ms (POST /v1/vms/:name/migrate):
 * a new backup from a snapshot (64 MiB streamed), the planned switch, the new
 * primary's own new backup. Past it the request answers FTVM_ERR_UNAVAILABLE;
 * the VM goes on wherever the migration left it.
 */
export const MIGRATE_TIMEOUT_MS = 120_000;
/**
 * How long each step of a planned switch may take, in ms: the primary
 * pausing at its next check point, its backup acknowledging the whole log,
 * the backup going live. A pause or an acknowledgement later than this calls
 * the switch off (the primary goes on); a backup not live by then is settled
 * by a claim at the arbiter.
 */
export const MIGRATE_SWITCH_MS = 3000;
/** Bytes of each VM's stdout and stderr a host says in its log each second (the rest is counted; the rings keep it). */
export const GUEST_LOG_BYTES_PER_SECOND = 64 * 1024;
/** Bytes a client-port connection may have waiting to be written to it; past it the client is dropped (it may resume: its outputs are retained). */
export const CLIENT_WRITE_BYTES_MAX = 16 * 1024 * 1024;
/** After the primary's host refused a forwarded client-port send (FTVM_ERR_BUSY), the host it came through refuses sends to that VM itself for this long, in ms. */
export const BUSY_HOLD_MS = 100;
/** VMs a host remembers as busy at once (see BUSY_HOLD_MS; the oldest are forgotten). */
export const BUSY_VMS_MAX = 4096;
/** Outputs a primary holds for the Output Rule, past which its guest is stalled (as at --unacked-log-max) until the backup's acks bring them under half. */
export const HELD_OUTPUTS_MAX = 65_536;
/** Bytes of the outputs a primary holds for the Output Rule, past which its guest is stalled (see HELD_OUTPUTS_MAX). */
export const HELD_BYTES_MAX = 32 * 1024 * 1024;
/** Log entries a backup's replay may be behind what its host received; past it the host holds its acks until the replay is within half (the primary's unacknowledged log then stalls its guest). */
export const BACKUP_BEHIND_ENTRIES_MAX = 65_536;
/** Client messages a primary's host handed its replica that are not in the guest's NIC yet; a client-port or REST send past it is refused with FTVM_ERR_BUSY. */
export const INPUT_INBOX_MAX = 1024;
/** Bytes of those messages (see INPUT_INBOX_MAX). */
export const INPUT_INBOX_BYTES_MAX = 4 * 1024 * 1024;
/** Log frames a live replica posted that its host's thread has not taken yet; past it the guest waits at its next flush. */
export const POSTED_FRAMES_MAX = 256;
/** Bytes of those frames (see POSTED_FRAMES_MAX). */
export const POSTED_BYTES_MAX = 8 * 1024 * 1024;
/** A live replica posts the frame its stdout and stderr writes join once this long has passed since its last post (or at a check point's progress, a wait, a full frame), in ms. */
export const OUTPUT_FLUSH_MS = 1;
/** Output rings received for backups not made yet, kept at once (the oldest are dropped). */
export const RINGS_IN_MAX = 64;
/** How long a start forwarded to the host placement chose may take, metering a large module included, in ms. */
export const START_FWD_TIMEOUT_MS = 300_000;
/** Hosts with forwarded starts in flight; beyond, a start runs where it was asked (a bound on the map). */
export const PLACING_MAX = 1024;
/** Seconds of event-loop delay maxima a host keeps for its status. */
export const LOOP_SECONDS_MAX = 300;
/** Silences of a peer (of at least two heartbeats) the failure detector remembers; older ones are dropped. */
export const DETECTOR_GAPS_MAX = 256;
/** Readers waiting for a VM's output at once, per VM. */
export const OUTPUT_READERS_MAX = 256;
/** Forwarded output reads waiting for an answer, per host. */
export const OUTPUT_READS_MAX = 1024;
/** The longest a read of a VM's output waits for more, in ms. */
export const OUTPUT_WAIT_MS_MAX = 60_000;
/** Bytes each output stream (stdout, stderr) of a VM keeps (the oldest are dropped beyond it). */
export const OUTPUT_RING_BYTES = 1024 * 1024;
/** Events a host keeps (the oldest are dropped). */
export const EVENTS_MAX = 4096;
/** State digests a host keeps per VM, the newest (its client port's status reports them). */
export const VM_DIGESTS_KEPT_MAX = 64;
/** A live replica skips a state digest whose hashing would pause its guest longer than this (ms; estimated from the memory's size at the last digest's rate): about 50 MiB of memory. */
export const VM_DIGEST_PAUSE_MS_MAX = 50;
/** Lag marks the lag meter keeps (at least the newest half are kept). */
export const LAG_MARKS_MAX = 4096;
/** The longest the throttle makes the primary rest at each poll, in µs. */
export const THROTTLE_US_MAX = 20_000;

// ---- Modules (host/api/server.ts, host/cluster/module-store.ts, host/cli/vm-cmd.ts) ----

/** The largest module a client may give inline (base64 in a JSON body), in bytes; larger ones are uploaded. */
export const INLINE_MODULE_BYTES_MAX = 16 * 1024 * 1024;
/** The CLI sends modules up to this many bytes inline; larger ones it uploads first. */
export const CLI_INLINE_MODULE_BYTES_MAX = 1024 * 1024;
/** The largest answer the CLI reads from the API, in bytes. */
export const CLI_ANSWER_BYTES_MAX = 64 * 1024 * 1024;
/** How long the REST API reads and drops what a client whose request line or headers it refused is still sending, in ms. */
export const REFUSED_DRAIN_MS = 2000;
/** Uploads a host receives and checks at once. */
export const UPLOADS_MAX = 4;
/** Modules a host's store keeps (default of `--module-store-count`). */
export const STORE_COUNT_MAX = 256;
/** Bytes a host's module store keeps (default of `--module-store-mib`). */
export const STORE_BYTES_MAX = 2 * 1024 * 1024 * 1024;
/** The largest module a host accepts, in bytes (default of its `moduleBytesMax`). */
export const MODULE_BYTES_MAX_DEFAULT = 128 * 1024 * 1024;
/** Bytes hashed between two turns of the event loop. */
export const HASH_SLICE_BYTES = 2 * 1024 * 1024;
/** Bytes of a refused upload read and dropped before the connection is cut. */
export const DRAIN_BYTES_MAX = 64 * 1024 * 1024;
/** Metering jobs a light-lane worker runs before it is replaced. */
export const METER_JOBS_PER_WORKER = 100;

// ---- One guest (host/runtime/) ----

/** Arguments a guest is started with, after its name (argv[0]). */
export const VM_ARGS_MAX = 4096;
/** Environment variables a guest is started with. */
export const VM_ENV_MAX = 4096;
/** Bytes (UTF-8) of one argument, or of one environment entry `NAME=value`: Linux's MAX_ARG_STRLEN (32 pages). */
export const VM_STRING_BYTES_MAX = 128 * 1024;
/** Bytes of argv and environ together as the guest sees them (each string's UTF-8 bytes and its NUL): they ride in the log's start entry and the backup request. */
export const VM_ARGV_ENV_BYTES_MAX = 512 * 1024;
/** Bytes of stdin given whole at start (logged at once, in chunks). */
export const VM_STDIN_BYTES_MAX = 8 * 1024 * 1024;
/** The share of one core a primary may compute, in percent. */
export const VM_CPU_PERCENT_MAX = 100;
/** The resolution a guest's CPU-time clocks report, in µs: one scheduler tick at HZ=250, the largest step of the replica thread's CPU time as Linux counts it (host/runtime/vm-clock.ts). */
export const VM_CPU_CLOCK_RESOLUTION_US = 4000;

/** The default call-depth budget of a guest, in frame slots. */
export const DEPTH_LIMIT_SLOTS = 64_000;
/** The default memory limit of a guest, in 64 KiB wasm pages (1 GiB). */
export const MEMORY_LIMIT_PAGES = 16_384;
/** The largest snapshot memory a host receives, in bytes: the largest memory a VM may have. */
export const SNAPSHOT_BYTES_MAX = MEMORY_LIMIT_PAGES * 65536;
/** The largest stack image of a command guest's snapshot (its wasm frames, unwound by Asyncify into a region of its memory lent for the purpose; runtime/unwind.ts), in bytes: the default depth budget's 64,000 slots of 8 bytes, and 512 KiB for the innermost frame. */
export const STACK_IMAGE_BYTES_MAX = 1024 * 1024;
/** The largest encoded device state (stdin not read yet, NIC queues and streams, files) a snapshot carries after its memory, in bytes; a larger one is not shipped, and the VM stays alone until a later try fits. */
export const SNAPSHOT_DEVICES_BYTES_MAX = 64 * 1024 * 1024;
/** File descriptors a guest holds open at once. */
export const FDS_MAX = 1024;
/** The longest path a guest may pass, in bytes. */
export const PATH_BYTES_MAX = 4096;
/** The longest name of one path component, in bytes. */
export const NAME_BYTES_MAX = 255;
/** Symlinks one path resolution may follow (Linux's MAXSYMLINKS). */
export const SYMLINK_FOLLOWS_MAX = 40;
/** The longest symlink target, in bytes. */
export const SYMLINK_BYTES_MAX = 4096;
/** Entries one directory of the virtual file system may hold. */
export const DIR_ENTRIES_MAX = 1 << 20;
/** Subscriptions one poll_oneoff call may pass. */
export const POLL_SUBSCRIPTIONS_MAX = 1 << 16;
/** The most bytes one fd_read asks a streamed stdin for. */
export const STDIN_READ_BYTES_MAX = 1 << 20;
/** The longest timed wait one Atomics.wait makes, in ms (longer waits loop). */
export const SLEEP_SLICE_MS = 60_000;

// ---- Tools ----

/** The most hosts `ftvm cluster up` starts. */
export const CLUSTER_HOSTS_MAX = 16;
/** How long a host a LocalCluster (or a chaos campaign) starts may take to print its ready line, in ms. */
export const HOST_READY_MS = 30_000;
/** Lines of each host's log a LocalCluster (`ftvm cluster up`) keeps in memory. */
export const HOST_LOG_LINES_MAX = 2000;
/** Characters of each such line kept (a longer line is cut; the log file has all of it). */
export const HOST_LOG_LINE_CHARS_MAX = 4096;
/** The longest an entry waits in memory before `ftvm record` writes it to the log file, in ms. */
export const RECORD_LOG_FLUSH_MS = 100;
/** How long `ftvm record` waits for its worker to write the log after a signal, in ms. */
export const RECORD_STOP_WAIT_MS = 1000;
/** How long `ftvm vm output --follow` keeps trying while the VM's primary is being replaced, in ms. */
export const FOLLOW_RETRY_MS = 60_000;
// ---- The chaos campaign (host/chaos/) ----

/** The hosts' failure timeout in a chaos campaign, in ms (`ftvm host --fail-ms`). */
export const CHAOS_FAIL_MS = 1000;
/** The hosts' heartbeat period in a chaos campaign, in ms (`ftvm host --heartbeat-ms`). */
export const CHAOS_HEARTBEAT_MS = 50;
/** How long a chaos trial may take to settle after healing, in ms (else a `not-settled` violation). */
export const CHAOS_SETTLE_MS = 20_000;
/** How long a chaos trial's final reads may take in all, in ms. */
export const CHAOS_FINAL_READS_MS = 20_000;
/** Operations one chaos violation lists at most. */
export const CHAOS_VIOLATION_OPS_MAX = 50;
/** How long the chaos campaign's etcd may take to serve, in ms. */
export const CHAOS_ETCD_READY_MS = 15_000;
/** Outputs a chaos trial remembers for its two-generations check; beyond it, no more are compared. */
export const CHAOS_OUTPUTS_KEPT_MAX = 1_000_000;
/** The longest pause of a chaos client process between two operations, in ms (drawn uniformly from 0 to it). */
export const CHAOS_STAGGER_MS_MAX = 10;
/** Operations a chaos trial records at most; its workload stops invoking beyond it. */
export const CHAOS_OPS_MAX = 200_000;
/** Hosts in a chaos cluster at most (one /24 per run: addresses .1 to .9). */
export const CHAOS_HOSTS_MAX = 9;
/** In a campaign, the VM logs a state digest every this many counts (about 25 kv operations), so that trials compare replicas' digests. */
export const CHAOS_DIGEST_EVERY_COUNTS = 100_000;
/** In a campaign, the hosts' state digests are read every this many ms while the workload runs. */
export const CHAOS_DIGEST_SAMPLE_MS = 500;
/** The most state digests one trial keeps to compare (the first ones; the rest are not compared). */
export const CHAOS_DIGESTS_KEPT_MAX = 100_000;
/** The longest RESP reply a campaign's TCP client takes (bytes); a longer one ends its connection. */
export const CHAOS_RESP_REPLY_BYTES_MAX = 64 * 1024;
/** The most TCP client processes at once a campaign runs (`ftvm chaos --tcp-processes`). */
export const CHAOS_TCP_PROCESSES_MAX = 64;
/** How long a campaign waits, at most, for the processes a trial left in the hosts' namespaces to die once killed (ms). */
export const CHAOS_STRAGGLERS_WAIT_MS = 2000;
/**
 * The largest seed a chaos trial may use (2^48): `--seed S` takes
 * 0..CHAOS_SEED_MAX and trial i uses S+i, so S+N-1 must not pass it either.
 * Every such sum is a safe integer, so the seed a trial prints is the one
 * that replays it. The generator (chaos/prng.ts) and the workloads' own
 * streams take the seed's low 32 bits, so the same integer always draws the
 * same schedule (and seeds that differ by a multiple of 2^32 draw the same one).
 */
export const CHAOS_SEED_MAX = 2 ** 48;
/** A seed drawn when --seed is absent is below this (short to type back). */
export const CHAOS_SEED_DRAWN_BOUND = 2 ** 31;
/** Trials in one chaos campaign at most (`ftvm chaos --trials`). */
export const CHAOS_TRIALS_MAX = 100_000;
/** Seconds of one chaos trial at most (`ftvm chaos --trial-seconds`). */
export const CHAOS_TRIAL_SECONDS_MAX = 3600;
/** The bound on a linearizability check's search time when the caller gives none, in ms (host/chaos/linearizability.ts). */
export const LINEARIZABILITY_CHECK_MS_DEFAULT = 10_000;
/** The most configurations the linearizability check's memo cache remembers for one key. */
export const LINEARIZABILITY_CACHE_ENTRIES_MAX = 1 << 20;
/** The most 32-bit words of sets that cache holds for one key (16 MiB). */
export const LINEARIZABILITY_CACHE_WORDS_MAX = 1 << 22;

/** A dependency between limits that does not hold, with code FTVM_ERR_LIMITS. */
export class LimitsError extends Error {
  readonly code = 'FTVM_ERR_LIMITS';
  constructor(readonly problems: string[]) {
    super(`FTVM_ERR_LIMITS: ${problems.join('; ')}`);
    this.name = 'LimitsError';
  }
}

/** The limits as one record, by name (what `limitProblems` checks). */
export type Limits = Record<string, number>;

/** Every limit of this file, by name. */
export function currentLimits(): Limits {
  return {
    WIRE_HEADER_BYTES, PEER_FRAME_BYTES_MAX, CLIENT_FRAME_BYTES_MAX, CLIENT_AUTH_FRAME_BYTES_MAX, CLIENT_AUTH_MS, MODULE_CHUNK_BYTES, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_QUEUED_BYTES_MAX, SNAPSHOTS_IN_MAX, SNAPSHOT_BYTES_MAX, SNAPSHOT_DEVICES_BYTES_MAX,
    INLINE_SHIP_BYTES_MAX, CLUSTER_MEMORY_MAX, CLIENT_RECENT_OUTPUTS_MAX, CONN_BLOCK_IDS, OTHER_CLUSTER_NOTES_MAX, PEER_LIST_MAX, FRAME_ENVELOPE_BYTES, LOG_HEADER_BYTES, LOG_FRAME_HEADER_BYTES,
    LOG_FRAME_BYTES_MAX, LOG_START_FRAME_BYTES_MAX, LOG_PREOPENS_MAX, LOG_FRAME_TARGET_BYTES, LOG_FRAME_ENTRIES_MAX,
    LOG_ENTRY_CHUNK_BYTES, REPLICA_FRAME_FLUSH_BYTES, REPLICA_BATCH_FLUSH_BYTES, UNACKED_LOG_BYTES_MAX, STREAMS_DONE_MAX,
    NIC_MESSAGE_BYTES_MAX, GUEST_UNREAD_BYTES_MAX, CLIENT_UNREAD_BYTES_MAX, SEND_WINDOW_BYTES, WAITALL_BYTES_MAX,
    TCPLISTEN_CONNS_MAX, TCPLISTEN_END_WAIT_MS, PUBLISH_PORTS_MAX, INGRESS_UNACKED_BYTES_MAX, INGRESS_CONNS_MAX,
    INGRESS_HALF_CLOSED_MAX, INGRESS_CONNS_PER_VM_MAX, INGRESS_OUT_OF_ORDER_MAX, INGRESS_REPEAT_MS,
    INGRESS_CLOSED_LINGER_MS, INGRESS_BIND_RETRY_MS, OFFER_TIMEOUT_MS, INCOMING_MODULES_MAX, INCOMING_IDLE_MS,
    BACKUP_RETRY_MS, CLIENT_IDLE_MS, CLIENT_CONNS_MAX, CLIENT_CONNS_PER_ADDRESS_MAX, CONN_OWNERS_MAX, RESUME_VMS_MAX, CLIENT_SWEEP_MS, RETAIN_MAX, RETAIN_BYTES_MAX, SLOT_GONE_MS_MIN, INFO_EVERY_MS, API_CONN_IDLE_MS, ADMIN_TIMEOUT_MS,
    MIGRATE_TIMEOUT_MS, MIGRATE_SWITCH_MS, API_BOX_MAX, RINGS_IN_MAX, START_FWD_TIMEOUT_MS, PLACING_MAX, LOOP_SECONDS_MAX, DETECTOR_GAPS_MAX, OUTPUT_READERS_MAX, OUTPUT_READS_MAX, OUTPUT_WAIT_MS_MAX, OUTPUT_RING_BYTES, EVENTS_MAX, VM_DIGESTS_KEPT_MAX, VM_DIGEST_PAUSE_MS_MAX,
    LAG_MARKS_MAX, THROTTLE_US_MAX, INLINE_MODULE_BYTES_MAX, CLI_INLINE_MODULE_BYTES_MAX, CLI_ANSWER_BYTES_MAX,
    REFUSED_DRAIN_MS, UPLOADS_MAX, STORE_COUNT_MAX, STORE_BYTES_MAX, MODULE_BYTES_MAX_DEFAULT, HASH_SLICE_BYTES, DRAIN_BYTES_MAX,
    METER_JOBS_PER_WORKER, VM_ARGS_MAX, VM_ENV_MAX, VM_STRING_BYTES_MAX, VM_ARGV_ENV_BYTES_MAX, VM_STDIN_BYTES_MAX, VM_CPU_PERCENT_MAX, VM_CPU_CLOCK_RESOLUTION_US, DEPTH_LIMIT_SLOTS, MEMORY_LIMIT_PAGES, STACK_IMAGE_BYTES_MAX, FDS_MAX, PATH_BYTES_MAX, NAME_BYTES_MAX,
    SYMLINK_FOLLOWS_MAX, SYMLINK_BYTES_MAX, DIR_ENTRIES_MAX, POLL_SUBSCRIPTIONS_MAX, STDIN_READ_BYTES_MAX,
    SLEEP_SLICE_MS, CLUSTER_HOSTS_MAX, HOST_LOG_LINES_MAX, RECORD_LOG_FLUSH_MS, RECORD_STOP_WAIT_MS, FOLLOW_RETRY_MS, CHAOS_FAIL_MS, CHAOS_HEARTBEAT_MS, CHAOS_SETTLE_MS, CHAOS_FINAL_READS_MS, CHAOS_VIOLATION_OPS_MAX, CHAOS_TRIALS_MAX, CHAOS_TRIAL_SECONDS_MAX, CHAOS_ETCD_READY_MS, CHAOS_OUTPUTS_KEPT_MAX, CHAOS_STAGGER_MS_MAX, CHAOS_OPS_MAX, CHAOS_HOSTS_MAX, CHAOS_DIGEST_EVERY_COUNTS, CHAOS_DIGEST_SAMPLE_MS, CHAOS_DIGESTS_KEPT_MAX, CHAOS_RESP_REPLY_BYTES_MAX, CHAOS_TCP_PROCESSES_MAX, CHAOS_STRAGGLERS_WAIT_MS, CHAOS_SEED_MAX, CHAOS_SEED_DRAWN_BOUND, HOST_READY_MS, LINEARIZABILITY_CHECK_MS_DEFAULT, LINEARIZABILITY_CACHE_ENTRIES_MAX, LINEARIZABILITY_CACHE_WORDS_MAX,
    NIC_QUEUE_MAX, NIC_QUEUE_BYTES_MAX, API_BOX_BYTES_MAX, API_CONNECTIONS_MAX, TOMBSTONES_MAX, ADMIN_WAITS_MAX, GUEST_LOG_BYTES_PER_SECOND,
    CLIENT_WRITE_BYTES_MAX, BUSY_HOLD_MS, BUSY_VMS_MAX, HELD_OUTPUTS_MAX, HELD_BYTES_MAX, BACKUP_BEHIND_ENTRIES_MAX, INPUT_INBOX_MAX,
    INPUT_INBOX_BYTES_MAX, POSTED_FRAMES_MAX, POSTED_BYTES_MAX, OUTPUT_FLUSH_MS, HOST_LOG_LINE_CHARS_MAX,
  };
}

/**
 * The dependencies between limits, each as [what must hold, holds?] for the
 * limits `l`. Every entry names the rule in words, so a failure says which.
 */
function rules(l: Limits): [string, boolean][] {
  const peer = l.PEER_FRAME_BYTES_MAX - l.FRAME_ENVELOPE_BYTES;
  const client = l.CLIENT_FRAME_BYTES_MAX - l.FRAME_ENVELOPE_BYTES;
  return [
    ['every limit is a positive safe integer', Object.values(l).every((v) => Number.isSafeInteger(v) && v > 0)],
    // frames on the wire carry what the rest of the host hands them
    ['a NIC message and its envelope fit a client frame', l.NIC_MESSAGE_BYTES_MAX <= client],
    ['a NIC message and its envelope fit a peer frame (inputs are shipped to the backup)', l.NIC_MESSAGE_BYTES_MAX <= peer],
    ['a log frame and its envelope fit a peer frame', l.LOG_FRAME_BYTES_MAX + l.LOG_FRAME_HEADER_BYTES <= peer],
    ['a replica log flush (with one batch overshoot) fits a peer frame', l.REPLICA_FRAME_FLUSH_BYTES + l.REPLICA_BATCH_FLUSH_BYTES <= peer],
    ['a snapshot chunk and its envelope fit a peer frame', l.SNAPSHOT_CHUNK_BYTES <= peer],
    ['a snapshot waits for the link to drain to at most a few chunks', l.SNAPSHOT_QUEUED_BYTES_MAX <= 4 * l.SNAPSHOT_CHUNK_BYTES],
    ['a snapshot of the largest memory is made of chunks', l.SNAPSHOT_BYTES_MAX >= l.SNAPSHOT_CHUNK_BYTES],
    ['a stack image holds a guest at the default depth budget, with room for its innermost frame', l.STACK_IMAGE_BYTES_MAX >= l.DEPTH_LIMIT_SLOTS * 8 + 256 * 1024],
    ['a stack image fits one snapshot chunk', l.STACK_IMAGE_BYTES_MAX <= l.SNAPSHOT_CHUNK_BYTES],
    ['a snapshot\'s devices hold the stdin and the NIC queue a VM may have, and unread input of many TCP connections', l.SNAPSHOT_DEVICES_BYTES_MAX >= l.VM_STDIN_BYTES_MAX + l.NIC_QUEUE_BYTES_MAX + l.NIC_MESSAGE_BYTES_MAX + 32 * l.GUEST_UNREAD_BYTES_MAX],
    ['a module chunk and its envelope fit a peer frame', l.MODULE_CHUNK_BYTES <= peer],
    ['an inline-shipped module and its metered form fit a peer frame', l.INLINE_SHIP_BYTES_MAX <= peer],
    ['both output rings of a VM fit a peer frame (one rings frame before a backup made from a snapshot)', 2 * l.OUTPUT_RING_BYTES <= peer],
    ['an inline module (base64 in a start request) fits a client frame', Math.ceil((l.INLINE_MODULE_BYTES_MAX * 4) / 3) <= client],
    ['an authentication frame is smaller than any other client frame', l.CLIENT_AUTH_FRAME_BYTES_MAX < l.CLIENT_FRAME_BYTES_MAX],
    ['a peer frame and a client frame are whole u32 lengths', l.PEER_FRAME_BYTES_MAX < 2 ** 32 && l.CLIENT_FRAME_BYTES_MAX < 2 ** 32],
    // log entries and log frames
    ['a log entry chunk and its entry fields fit a log frame', l.LOG_ENTRY_CHUNK_BYTES + l.LOG_FRAME_HEADER_BYTES + 1024 <= l.LOG_FRAME_BYTES_MAX],
    ['a NIC message fits one log entry chunk', l.NIC_MESSAGE_BYTES_MAX <= l.LOG_ENTRY_CHUNK_BYTES],
    ['a writer cuts frames well under the frame limit', 2 * l.LOG_FRAME_TARGET_BYTES <= l.LOG_FRAME_BYTES_MAX],
    ['the start frame may be larger than the other frames', l.LOG_START_FRAME_BYTES_MAX >= l.LOG_FRAME_BYTES_MAX],
    ['the unacknowledged log holds a few flushes before the primary stalls', l.UNACKED_LOG_BYTES_MAX >= 4 * (l.REPLICA_FRAME_FLUSH_BYTES + l.REPLICA_BATCH_FLUSH_BYTES)],
    ['the unacknowledged log holds a few log frames', l.UNACKED_LOG_BYTES_MAX >= 4 * l.LOG_FRAME_BYTES_MAX],
    ['the unacknowledged log\'s bound fits the Int32 slot the primary\'s worker reads it from, below its largest value (replay/engine.ts SIGNAL_UNACKED_BOUND)', l.UNACKED_LOG_BYTES_MAX < 2 ** 31 - 1],
    // a guest's arguments, environment and stdin
    ['arguments and environment fit the first log frame with one input chunk (the start entry is written with what follows it)', l.VM_ARGV_ENV_BYTES_MAX + l.LOG_ENTRY_CHUNK_BYTES + l.FRAME_ENVELOPE_BYTES <= l.LOG_FRAME_BYTES_MAX],
    ['a backup request (the start entry with arguments and environment, and an inline-shipped module) fits a peer frame', l.VM_ARGV_ENV_BYTES_MAX + l.INLINE_SHIP_BYTES_MAX <= peer],
    ['one argument or variable fits them all', l.VM_STRING_BYTES_MAX <= l.VM_ARGV_ENV_BYTES_MAX],
    ['arguments and environment variables each fit msgpack\'s 16-bit array and map headers (the wire encoder uses no larger ones)', l.VM_ARGS_MAX < 65_536 && l.VM_ENV_MAX < 65_536],
    ['stdin given at start is at most a quarter of the unacknowledged log (the primary does not stall at its start)', 4 * l.VM_STDIN_BYTES_MAX <= l.UNACKED_LOG_BYTES_MAX],
    ['stdin given at start fits a client frame', l.VM_STDIN_BYTES_MAX <= client],
    // the NIC and TCP
    ['a NIC message fits what the guest may leave unread', l.NIC_MESSAGE_BYTES_MAX <= l.GUEST_UNREAD_BYTES_MAX],
    ['a MSG_WAITALL wait stays below the unread bound (so it always ends)', l.WAITALL_BYTES_MAX < l.GUEST_UNREAD_BYTES_MAX],
    ['the send window fits what a non-reading client may hold', l.SEND_WINDOW_BYTES <= l.CLIENT_UNREAD_BYTES_MAX],
    ['a NIC message fits the send window', l.NIC_MESSAGE_BYTES_MAX <= l.SEND_WINDOW_BYTES],
    ['a NIC message fits what ingress takes ahead of the backup', l.NIC_MESSAGE_BYTES_MAX <= l.INGRESS_UNACKED_BYTES_MAX],
    ['one VM\'s share of ingress connections is below the host\'s', l.INGRESS_CONNS_PER_VM_MAX <= l.INGRESS_CONNS_MAX],
    ['half-closed connections are bounded by the connections', l.INGRESS_HALF_CLOSED_MAX <= l.INGRESS_CONNS_MAX],
    // queued input and held output
    ['a NIC message fits the inbox and the NIC queue', l.NIC_MESSAGE_BYTES_MAX <= l.INPUT_INBOX_BYTES_MAX && l.NIC_MESSAGE_BYTES_MAX <= l.NIC_QUEUE_BYTES_MAX],
    ['a full NIC queue and its envelope fit a peer frame (it rides in a snapshot\'s devices)', l.NIC_QUEUE_BYTES_MAX <= peer],
    ['a replica flush (with one batch overshoot) fits what a replica may have posted', l.REPLICA_FRAME_FLUSH_BYTES + l.REPLICA_BATCH_FLUSH_BYTES <= l.POSTED_BYTES_MAX],
    ['held outputs stall the guest no later than the unacknowledged log would', l.HELD_BYTES_MAX <= l.UNACKED_LOG_BYTES_MAX],
    // modules
    ['the CLI inlines only modules the API accepts inline', l.CLI_INLINE_MODULE_BYTES_MAX <= l.INLINE_MODULE_BYTES_MAX],
    ['an inline module is a module a host accepts', l.INLINE_MODULE_BYTES_MAX <= l.MODULE_BYTES_MAX_DEFAULT],
    ['the module store holds the largest module', l.MODULE_BYTES_MAX_DEFAULT <= l.STORE_BYTES_MAX],
    ['inline shipping is for small modules (below a module chunk)', l.INLINE_SHIP_BYTES_MAX <= l.MODULE_CHUNK_BYTES],
    // client connections
    ['one address\'s share of client connections is below the host\'s', l.CLIENT_CONNS_PER_ADDRESS_MAX <= l.CLIENT_CONNS_MAX],
    ['the sweep runs many times within the authentication time and the idle time', 4 * l.CLIENT_SWEEP_MS <= l.CLIENT_AUTH_MS && 4 * l.CLIENT_SWEEP_MS <= l.CLIENT_IDLE_MS],
    // timers
    ['a module offer times out before an idle incoming module is dropped', l.OFFER_TIMEOUT_MS <= l.INCOMING_IDLE_MS],
    ['a host is told how VMs are doing many times before an admin request times out', 4 * l.INFO_EVERY_MS <= l.ADMIN_TIMEOUT_MS],
    ['a migration has time for its three switch steps and more', 3 * l.MIGRATE_SWITCH_MS < l.MIGRATE_TIMEOUT_MS],
  ];
}

/**
 * The dependencies between the limits `l` that do not hold, in words (empty
 * when all hold). Pure: used by checkLimits and by tests with altered limits.
 */
export function limitProblems(l: Limits = currentLimits()): string[] {
  return rules(l)
    .filter(([, ok]) => !ok)
    .map(([what]) => what);
}

/**
 * Asserts every dependency between the limits; run when a host starts.
 * Throws LimitsError (FTVM_ERR_LIMITS) naming each one that does not hold.
 */
export function checkLimits(l: Limits = currentLimits()): void {
  const problems = limitProblems(l);
  if (problems.length > 0) throw new LimitsError(problems);
}
