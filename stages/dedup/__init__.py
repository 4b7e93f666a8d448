"""Cross-source deduplication, one module per job:

- config: DedupConfig.
- signatures: pixel hash + pHash of the analysis image (SignatureAnnotator); minhash: caption MinHash
  equal to datasketch's; caption_stage: CaptionMinHashStage writing `dedup.minhash`.
- banding: band keys (pHash pigeonhole bands and sub-bands, MinHash LSH bands); candidates: the capped,
  sort-based search inside buckets; components: connected components over edges.
- survivor: the survivor rule, drop reasons, inherited captions, caption cap; the decision schema.
- identify: the per-block and per-partition steps of the global job that curation.dedup_job runs on Ray.

Kept free of imports so that loading the config does not load the search.
"""
