"""Stock BindsNET vs the fused replica kernel on MNIST; prints the result as JSON."""
import json

from stdp_bench.bench import run_bench

print(json.dumps(run_bench()))
