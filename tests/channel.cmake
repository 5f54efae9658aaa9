# The request channel: its wire format, the mock link, and the server's channel service in
# process (hostile clients, stale completions, idle cost). The integration suites run over the
# channel by default and without it under the "nochannel/" prefix (integration.cmake).
kvrdma_add_test(channel_codec_test SOURCES channel_codec_test.cc LIBS kvrdma_channel)
kvrdma_add_test(channel_service_test SOURCES channel_service_test.cc LIBS kvrdma_core)
