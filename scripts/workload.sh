# The benchmarks' shared workload, sourced by bench.sh, bench-sync.sh and profile.sh:
# the ~280-byte report the reference setup sends, and the device principal that sends
# it. It carries no submissionId: every request is a new report.
DEVICE_TOKEN=device-token-0123456789
REPORT_BODY='{"patientId":"P-000123","projectId":"P001","siteId":"S01","submissionRef":"3f2a9c1e-5b7d-4e2a-9f1c-8d6b4a2e7c31","reportData":{"q1":3,"q2":1,"q3":4,"painScore":6,"sleepHours":7.5,"nausea":false,"notes":"mild headache after lunch"},"timestamp":"2026-11-26T08:15:30Z"}'

# device_principal -> the device principal's config table, on stdout.
device_principal() {
  cat <<TOML
[[principals]]
id = "device-1"
token = "$DEVICE_TOKEN"
role = "device"
projects = ["P001"]
TOML
}

# submit_lua -> a wrk script that POSTs the report, on stdout.
submit_lua() {
  cat <<LUA
wrk.method = "POST"
wrk.path = "/epro/submit"
wrk.body = [[$REPORT_BODY]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $DEVICE_TOKEN"
LUA
}
