# Which JIT a gmem command gets; sourced by the launcher (./gmem), tested by LauncherJitPolicyTest.
#
# Short commands run on the client compiler alone: on two cores the server compiler's threads slowed
# a sub-second restore by about 100 ms, its own work included (docs/benchmarks.md, start time). Work
# that runs long, or whose bytes go through Java's cryptography, needs the server compiler: the
# benchmarks, the demo, the daemons (fc-handler, fc-keeper, serve), anything serving metrics, and
# anything fed from a network or a store (a tcp:// or s3:// argument). On the client compiler alone,
# TLS's AES-GCM and the store's SHA-256 run 10-30 times slower: a 511 MiB TLS migration took 16 s
# through the commands, against 0.5 s in one JVM with both compilers.
#
# gmem_jit_policy ARGS...: sets gmem_full_jit to 1 (both compilers) or 0 (the client compiler alone).
gmem_jit_policy() {
  gmem_full_jit=0
  case "${1:-}" in
    bench | demo | fc-handler | fc-keeper | serve)
      gmem_full_jit=1
      return
      ;;
  esac
  local a
  for a in "$@"; do
    case "$a" in
      --metrics | --metrics=* | tcp://* | s3://* | *=tcp://* | *=s3://*)
        gmem_full_jit=1
        return
        ;;
    esac
  done
}
