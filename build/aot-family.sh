# Which ahead-of-time cache a gmem command starts with; sourced by the launcher (./gmem), tested by
# LauncherAotFamilyTest.
#
# The JVM loads every class of its cache before main, used or not: a cache of every command's classes
# cost `gmem --version` about 18 ms, and an eager restore about 12 ms, against a cache of their own
# (docs/benchmarks.md, start time). So each command whose start matters has a cache of its own,
# trained on that command alone (the families of dev.gmem.cli.AotTraining), and all.aot, trained on
# all of them, serves the others.
#
# gmem_aot_family ARGS...: sets gmem_family to the family of the command line ARGS: main for no
# command, an option first (--version, --help) or help, restore-lazy for a lazy restore, else the
# command's own name. The launcher uses all.aot when that family has no cache.
gmem_aot_family() {
  gmem_family=main
  case "${1:-}" in
    "" | -*) return ;;
    *[!a-z0-9-]*)
      gmem_family=all
      return
      ;;
  esac
  gmem_family="$1"
  # help prints what --help prints
  [ "$1" = help ] && gmem_family=main
  [ "$1" = restore ] || return 0
  local a prev=""
  for a in "${@:2}"; do
    # after --, every word is an argument, never an option
    [ "$a" = -- ] && return 0
    case "$a" in
      --mode=[Ll][Aa][Zz][Yy]) gmem_family=restore-lazy && return 0 ;;
    esac
    case "$prev" in
      --mode) case "$a" in [Ll][Aa][Zz][Yy]) gmem_family=restore-lazy && return 0 ;; esac ;;
    esac
    prev="$a"
  done
}
