#!/usr/bin/env bash
# Installs llama.cpp's Python bindings (llama-cpp-python) for tools/check_interop.py, building only
# the llama.cpp libraries they load (libllama and ggml), not the whole source package: a plain
# `pip install llama-cpp-python` also compiles llama.cpp's common library, HTTP server code and the
# multimodal library (about 300 C++ files). -O1: the check runs tiny models, compile time matters more.
#
# Everything comes from PyPI's source package (no prebuilt binary is downloaded). The libraries are
# built once into $FERROLM_LLAMA_CPP_DIR (default ~/.cache/ferrolm/llama-cpp-VERSION) and reused;
# check_interop.py finds them there (or through LLAMA_CPP_LIB_PATH).
# Usage: bash tools/install_llama_cpp.sh        prints the library directory on its last line.
set -euo pipefail
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
dir=${FERROLM_LLAMA_CPP_DIR:-$HOME/.cache/ferrolm/llama-cpp-$version}
libs="$dir/build/bin"
if [ ! -f "$libs/libllama.so" ]; then
    command -v cmake >/dev/null || python3 -m pip install --quiet --disable-pip-version-check cmake
    rm -rf "$dir" && mkdir -p "$dir"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
        -d "$dir" "llama-cpp-python==$version"
    tar -xzf "$dir"/llama_cpp_python-"$version".tar.gz -C "$dir"
    mv "$dir/llama_cpp_python-$version" "$dir/src"
    cmake -S "$dir/src/vendor/llama.cpp" -B "$dir/build" -DCMAKE_BUILD_TYPE= -DCMAKE_C_FLAGS=-O1 \
        -DCMAKE_CXX_FLAGS=-O1 -DBUILD_SHARED_LIBS=ON \
        -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >/dev/null
    cmake --build "$dir/build" --target llama -j "$(nproc)" >/dev/null
fi
if ! LLAMA_CPP_LIB_PATH="$libs" python3 -c 'import llama_cpp' 2>/dev/null; then
    # The Python package alone: its own CMake step told not to build llama.cpp again.
    src="$dir/src"
    if [ ! -d "$src" ]; then
        python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
            -d "$dir" "llama-cpp-python==$version"
        tar -xzf "$dir"/llama_cpp_python-"$version".tar.gz -C "$dir"
        mv "$dir/llama_cpp_python-$version" "$src"
    fi
    CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" python3 -m pip install --quiet \
        --disable-pip-version-check "$src"
fi
LLAMA_CPP_LIB_PATH="$libs" python3 -c 'import llama_cpp; print("llama_cpp", llama_cpp.__version__)'
echo "$libs"
