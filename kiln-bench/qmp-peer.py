#!/usr/bin/env python3
"""Peer for the QMP round trip: a bare blocking client (standard library only) against a paused QEMU.
Usage: kiln-bench/qmp-peer.py   (prints the median of 2000 query-status round trips after 500 warm-up)"""
import os, socket, statistics, subprocess, tempfile, time

d = tempfile.mkdtemp(prefix="kiln-qmp-peer-")
path = os.path.join(d, "qmp.sock")
qemu = subprocess.Popen(["qemu-system-x86_64", "-M", "none", "-S", "-display", "none", "-nodefaults",
                         "-m", "16", "-qmp", f"unix:{path},server=on,wait=off"])
try:
    for _ in range(500):
        if os.path.exists(path):
            break
        time.sleep(0.01)
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b'{"execute":"qmp_capabilities"}')
    f.readline()
    times = []
    for i in range(2500):
        t = time.perf_counter()
        s.sendall(b'{"execute":"query-status"}')
        f.readline()
        times.append(time.perf_counter() - t)
    print("python blocking QMP client, query-status round trip: median %.3f ms (n=2000)"
          % (statistics.median(times[500:]) * 1000))
finally:
    qemu.kill()
    qemu.wait()
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)
