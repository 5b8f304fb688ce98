import os

# Keep test runs hermetic: compiled-tree cache in a per-session temp folder.
os.environ.setdefault("REGMIX_CACHE", os.path.join(os.environ.get("TMPDIR", "/tmp"), f"regmix-test-cache-{os.getpid()}"))
