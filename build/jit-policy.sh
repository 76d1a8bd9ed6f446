# Which JIT and which start options a gmem command gets; sourced by the launcher (./gmem), tested by
# LauncherJitPolicyTest.
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

# gmem_start_options OWN_JIT CACHED NO_REPLAY ARGS...: sets gmem_full_jit (gmem_jit_policy) and the array
# gmem_start_opts, the JVM options of the start of the command in ARGS. A short command (gmem_full_jit=0)
# gets no performance-data file (jps and jstat do not see it; 2 ms) and reflective calls through the JDK's
# native accessor (no method handle spun per method; 5 ms). Unless the user chose a JIT of their own
# (OWN_JIT=0), it also runs on the client compiler alone and, when it uses an ahead-of-time cache
# (CACHED=1) whose training found that this JDK takes the option (NO_REPLAY=1), does not replay the
# cache's method profiles, which serve the server compiler (8-10 ms). Each figure: docs/benchmarks.md.
gmem_start_options() {
  local own_jit="$1" cached="$2" no_replay="$3"
  shift 3
  gmem_jit_policy "$@"
  gmem_start_opts=()
  [ "$gmem_full_jit" = 0 ] || return 0
  gmem_start_opts+=(-XX:-UsePerfData -Djdk.reflect.useNativeAccessorOnly=true)
  [ "$own_jit" = 1 ] || return 0
  gmem_start_opts+=(-XX:TieredStopAtLevel=1)
  if [ "$cached" = 1 ] && [ "$no_replay" = 1 ]; then
    gmem_start_opts+=(-XX:+UnlockDiagnosticVMOptions -XX:-AOTReplayTraining)
  fi
}
