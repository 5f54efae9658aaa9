# Metrics (docs/metrics.md): the renderer and histograms alone, then kv-server --metrics-addr
# scraped over HTTP and parsed by Debian's python3-prometheus-client (tests/metrics_scrape.py).
kvrdma_add_test(metrics_test SOURCES metrics_test.cc)
kvrdma_add_test(metrics_scrape_test SOURCES integration/metrics_scrape_test.cc
                LIBS kvrdma_harness kvrdma_core)
target_compile_definitions(metrics_scrape_test PRIVATE
  KVRDMA_METRICS_SCRAPE_PY="${CMAKE_CURRENT_SOURCE_DIR}/metrics_scrape.py")
add_dependencies(metrics_scrape_test kv-server)
