"""Throughput of the reader's forwards on this host: one forward at a time with 2 intra-op
threads (what chat/reader/batching.MicroBatcher does today) against two forwards at a time with
1 thread each (two "lanes"), and a lone forward with 1 or 2 threads. Run it as the server runs
the reader (passive OpenMP waiting):

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/reader_lanes.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import threading, time, torch
from chat.reader import load_network
from index.embedding import base_model_path
net, _ = load_network(base_model_path())
ids = torch.randint(1000, 20000, (4, 256)); mask = torch.ones_like(ids)
def fwd():
    with torch.inference_mode():
        net(ids, mask)
for _ in range(2): fwd()
N = 12
torch.set_num_threads(2)
t = time.perf_counter(); c = time.process_time()
for _ in range(N): fwd()
w2 = time.perf_counter() - t; c2 = time.process_time() - c
print(f"one lane, 2 threads: {N} forwards of 4x256 in {w2:.2f} s wall, {c2:.2f} s CPU -> {N/w2:.2f} fwd/s")
def lane(n):
    torch.set_num_threads(1)
    for _ in range(n): fwd()
t = time.perf_counter(); c = time.process_time()
th = [threading.Thread(target=lane, args=(N // 2,)) for _ in range(2)]
[x.start() for x in th]; [x.join() for x in th]
w1 = time.perf_counter() - t; c1 = time.process_time() - c
print(f"two lanes, 1 thread each: {N} forwards in {w1:.2f} s wall, {c1:.2f} s CPU -> {N/w1:.2f} fwd/s; ratio {w2/w1:.2f}")
torch.set_num_threads(1)
t = time.perf_counter()
for _ in range(4): fwd()
print(f"one lane, 1 thread: {(time.perf_counter()-t)/4*1000:.0f} ms a forward; 2 threads: {w2/N*1000:.0f} ms")
