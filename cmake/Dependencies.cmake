# Finds every external dependency of kring, from the system (Debian packages), in one place.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

pkg_check_modules(sodium REQUIRED IMPORTED_TARGET libsodium)
pkg_check_modules(zmq REQUIRED IMPORTED_TARGET libzmq)
pkg_check_modules(httplib REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(SQLite3 REQUIRED)
find_package(OpenSSL REQUIRED)  # cpp-httplib is built with TLS; its inline SSL code needs libssl
find_package(cereal REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(doctest REQUIRED)
find_package(yaml-cpp REQUIRED)

# cppzmq is header-only; its CMake config insists on finding libzmq's own
# CMake files, which Debian does not ship, so we take the header directly.
find_path(CPPZMQ_INCLUDE_DIR zmq.hpp REQUIRED)
add_library(kring_cppzmq INTERFACE)
target_include_directories(kring_cppzmq SYSTEM INTERFACE ${CPPZMQ_INCLUDE_DIR})
target_link_libraries(kring_cppzmq INTERFACE PkgConfig::zmq)
add_library(kring::cppzmq ALIAS kring_cppzmq)
