// A service that embeds a kvrdma::Server and caches rendered pages through a kvrdma::Client.
#include <kvrdma/client.h>
#include <kvrdma/server.h>

#include <cstdio>
#include <string>

namespace {

// The expensive thing the cache saves us from doing twice.
std::string render_page(int id) {
  return "<html>page " + std::to_string(id) + "</html>" + std::string(100000, ' ');
}

}  // namespace

int main() {
  kvrdma::ServerOptions so;
  so.listen_addr = "127.0.0.1:0";
  so.memory_bytes = 64 << 20;
  auto server = kvrdma::Server::start(so);
  if (!server) {
    std::fprintf(stderr, "server: %s\n", server.status().to_string().c_str());
    return 1;
  }
  kvrdma::ClientOptions co;
  co.server_addr = (*server)->address();
  co.buffer_bytes = 16 << 20;
  auto cache = kvrdma::Client::connect(co);
  if (!cache) {
    std::fprintf(stderr, "client: %s\n", cache.status().to_string().c_str());
    return 1;
  }
  int renders = 0;
  for (int request = 0; request < 10; ++request) {
    int id = request % 3;
    std::string key = "page/" + std::to_string(id);
    auto hit = (*cache)->get(key);
    if (hit.is_ok()) {
      std::printf("request %d: page %d from cache (%zu bytes%s)\n", request, id, hit->size(),
                  hit->in_receive_buffer() ? ", pushed by RDMA write" : "");
      continue;
    }
    std::string page = render_page(id);
    ++renders;
    if (auto s = (*cache)->put(key, page, /*ttl_ms=*/60000); !s.is_ok()) {
      std::fprintf(stderr, "put: %s\n", s.to_string().c_str());
      return 1;
    }
    std::printf("request %d: page %d rendered and cached\n", request, id);
  }
  std::printf("%d renders for 10 requests\n", renders);
  return renders == 3 ? 0 : 1;
}
