# Probe (not part of the build): the GEMM rates PyTorch (oneDNN; AMX for bf16)
# reaches on this machine, the ceiling our kernels run against.
# Run: python3 bench/probes/torch_gemm_rate.py (PyTorch installed).
import time, torch
def rate(n, k, m, dt, threads, reps=5):
    torch.set_num_threads(threads)
    a = torch.randn(n, k).to(dt); b = torch.randn(k, m).to(dt)
    for _ in range(2): a @ b
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
    ts.sort(); t = ts[len(ts) // 2]
    return 2 * n * k * m / t / 1e9
for threads in (1, 16):
    for dt in (torch.bfloat16, torch.float32):
        for (n, k, m) in ((4096, 4096, 4096), (64, 128, 512), (512, 128, 8192), (512, 8192, 128)):
            print(f"threads {threads} {str(dt)[6:]} {n}x{k}x{m}: {rate(n, k, m, dt, threads, 20 if n*k*m < 1e8 else 5):.0f} GFLOP/s", flush=True)
