#!/usr/bin/env python3
"""Leaf-sample budget of the worker thread: perf script -F comm,ip,sym,dso (no callchain)."""
import subprocess, sys, re, collections
data = sys.argv[1]
reqs = float(sys.argv[2])       # requests served during the recording
cpu_s = float(sys.argv[3])      # proxy CPU seconds during the recording (all threads)
out = subprocess.run(["perf","script","-i",data,"-F","comm,ip,sym,dso"],capture_output=True,text=True).stdout
# perf script without -g gives one line per sample
cats = collections.Counter(); total=0; thread=collections.Counter()
rules = [
 ("kernel", lambda s,d: "kernel" in d),
 ("clock (vDSO)", lambda s,d: "vdso" in d),
 ("copies (memmove)", lambda s,d: "memmove" in s or "memcpy" in s),
 ("allocator", lambda s,d: s.startswith("mi_") or s.startswith("_mi_") or "malloc" in s or s=="free" or "mi_free" in s),
 ("HTTP/1 guard (smuggling scan)", lambda s,d: "h1_guard" in s),
 ("HTTP/2 guard", lambda s,d: "h2_guard" in s),
 ("hyper: server side", lambda s,d: "hyper" in s and ("Server" in s or "role::Server" in s or "server::conn" in s or "hyper_util::server" in s)),
 ("hyper: client side", lambda s,d: "hyper" in s and ("Client" in s or "client" in s)),
 ("hyper: codec/dispatch (shared)", lambda s,d: "hyper" in s or "httparse" in s),
 ("header maps (http crate)", lambda s,d: s.startswith("http::") or "<http::" in s or "HeaderMap" in s),
 ("access log", lambda s,d: "access_log" in s or "fmt" in s or "itoa" in s or "String as core::fmt::Write" in s),
 ("metrics", lambda s,d: "metrics" in s or "telemetry" in s or "quanta" in s),
 ("pool + connector + lb", lambda s,d: "upstream::" in s),
 ("router + policies (meshproxy::http, policy)", lambda s,d: "meshproxy::http" in s or "meshproxy::policy" in s or "meshproxy::body" in s or "meshproxy_config" in s),
 ("server (accept, connection)", lambda s,d: "meshproxy::server" in s or "meshproxy::runtime" in s),
 ("tokio (scheduler, timers, I/O driver, channels)", lambda s,d: "tokio" in s or "mio" in s),
 ("libc (syscall wrappers)", lambda s,d: "libc" in d),
 ("other user space", lambda s,d: True),
]
for line in out.splitlines():
    parts=line.strip().split(None,2)
    if len(parts)<3: continue
    comm=parts[0]; rest=parts[2]
    m=re.match(r"(.*)\s+\((.*)\)$",rest)
    if not m: continue
    sym,dso=m.group(1),m.group(2)
    thread[comm]+=1
    if comm!="worker-0": continue
    total+=1
    for name,f in rules:
        if f(sym,dso):
            cats[name]+=1; break
allthreads=sum(thread.values())
us_per_req = cpu_s/reqs*1e6
print(f"threads: {dict(thread)}; CPU per request (all threads) {us_per_req:.2f} us")
w = total/allthreads
print(f"| part | share of the worker's CPU | µs per request |\n|---|--:|--:|")
for name,_ in rules:
    c=cats[name]
    if c: print(f"| {name} | {100*c/total:.1f} % | {us_per_req*w*c/total:.2f} |")
print(f"| other threads (access-log writer, admin) | | {us_per_req*(1-w):.2f} |")
