#!/bin/bash
# summarize.sh RESULT.JSON: print a failover scenario's per-method story in one line each
# ("server A stopped at ..., first failed access ..., recovered at ..., error window ...").
# Failure modes: a result without marks or paths prints what it has.
R=$1
jq -r '
  def clock: (. / 1000 | floor | strftime("%H:%M:%S")) + "." + ((. % 1000 | floor | tostring) | ("00" + .)[-3:]);
  def mark($n): ([.marks[] | select(.name == $n) | .ts_ms] | first);
  (mark("failover-start") // mark("server-a-stopped") // mark("server-a-crashed") // mark("outage")) as $stop
  | mark("vip-moved") as $vip
  | "scenario \(.scenario) (\(.topology)): \(if .passed then "PASSED" else "FAILED" end)",
    "server A stopped at \($stop | if . then clock else "-" end), VIP on server B at \($vip | if . then clock else "-" end)",
    (.paths[] | select(.path == "/airflow/dags")
     | "  \(.label | (. + "          ")[:10]) first failed access \(.first_failure_ms | if . then clock else "none" end), " +
       (if .first_failure_ms == null then "no failure seen, slowest access \(.slowest.latency_ms // 0 | . / 1000 * 100 | round / 100) s, first success \((.after_marks["vip-moved"].first_success_ms // null) | if . then (. / 1000 * 100 | round / 100 | tostring) + " s" else "-" end) after the VIP moved"
        elif .recovered and .error_window_ms != null then
          "recovered at \((.first_failure_ms + .error_window_ms) | clock), error window \(.error_window_ms / 1000 * 100 | round / 100) s, first success \((.after_marks["vip-moved"].first_success_ms // null) | if . then (. / 1000 * 100 | round / 100 | tostring) + " s" else "-" end) after the VIP moved"
        else "NEVER recovered in this run" end)
       + ", success \(.success_ratio * 1000 | round / 10)%"),
    (.figures | to_entries[] | select(.key | startswith("ratio")) | "  \(.key) = \(.value)"),
    (.checks[] | "  \(if .pass then "PASS" else "FAIL" end) \(.name) \(.detail // "")")
' "$R"
