"""The ingest stage's data sources: each writes a poster data set (`labels.csv` +
`posters/`, the layout of labels.py) from its typed config (configs.py).

- `demo.generate_demo(out_dir, DemoSourceConfig)`: synthetic posters from a seed.
- `tmdb.ingest_tmdb(out_dir, TmdbSourceConfig, *, report_path, auth)`: MovieLens ids ->
  TMDb details and posters; below it `tmdb_api` (the client), `crawler` (rate-limited,
  retrying HTTP), `movielens` (the release zip) and `genre_mapping` (source genre names ->
  the 19-genre vocabulary).
- `local.ingest_local(out_dir, LocalSourceConfig)`: a poster folder plus its labels CSV.
- `dvc.materialise(version, out_dir, DvcSourceConfig)`: one data version from a DVC remote.
- `outdir`: the output-folder check and `building(out_dir)`, the one "build beside, then
  swap into place" every source that replaces its folder uses.

`postergenre.sources.ingest.ingest(source, ...)` picks one; the modules are imported only when
used, so the demo needs neither aiohttp nor DVC.
"""
