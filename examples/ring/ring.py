# examples/ring in Python: node i sends "Next to i is i+1" to node i+1 and prints what node i-1
# sent it. The worker puts distcomp_msg on PYTHONPATH.
import distcomp_msg as dm

i, n = dm.node_id, dm.n_node
dm.send((i + 1) % n, "Next to %d is %d" % (i, (i + 1) % n))
print(dm.recv((i - 1) % n).decode())
