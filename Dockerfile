# ssl3d images, one Dockerfile, three targets:
#   docker build --target runtime     -t ssl3d/runtime:0.2.0     .  # the `ssl3d` CLI: TensorFlow 2.21 on CUDA 12 (tfjs-node-gpu) + native CPU kernels
#   docker build --target runtime-cpu -t ssl3d/runtime-cpu:0.2.0 .  # the `ssl3d` CLI on the CPU with the native kernels, no CUDA
#   docker build --target operator    -t ssl3d/operator:0.2.0    .  # the operator: one esbuild bundle on Node, no TensorFlow
# Stages: deps (npm ci from the lockfile, cached until package*.json change) -> build (tsc -> dist/, esbuild bundle
# of the operator) -> runtime-deps (production dependencies, native kernels, tfjs-node-gpu built against TensorFlow
# 2.21 + CUDA 12 wheels from PyPI; docs/gpu.md) / runtime-cpu-deps (production dependencies + native kernel addon)
# -> the targets. No `# syntax=` line and no registry needed beyond the base images: the file builds with Docker
# (BuildKit) and with buildah (scripts/cluster/build-images.sh builds the operator and runtime-cpu targets for real,
# with base images made from Debian packages and the npm `node` package).
# Base images are pinned by exact tag (see docs/delivery.md to pin digests in your registry mirror).
# test/integration/delivery/dockerfile.test.ts lints this file (hadolint + project rules); steps marked
# `# ci: skip <reason>` need what the CI machine cannot reach (libtensorflow downloads, the CUDA image).

ARG NODE_IMAGE=node:22.23.3-bookworm-slim

FROM ${NODE_IMAGE} AS node

# ---- deps: all dependencies from the lockfile (dev included: typescript, esbuild via tsx) ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The package's own `install` hook builds the optional native CPU kernels; not needed to compile TypeScript.
COPY native/build.mjs ./native/build.mjs
ENV SSL3D_NATIVE=0
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --omit=optional

# ---- build: compile the TypeScript sources to dist/ and bundle the operator into one file ----
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY bin/ ./bin/
COPY api/ ./api/
COPY runtime/ ./runtime/
COPY operator/ ./operator/
RUN npm run build
# hadolint ignore=DL3059
RUN node_modules/.bin/esbuild operator/src/main.ts --bundle --platform=node --format=esm --target=node22 \
      --outfile=dist/operator.mjs --sourcemap --legal-comments=none \
      --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"

# ---- runtime-deps: production dependencies, the native CPU kernels (oneDNN, OpenBLAS) and the GPU TensorFlow ----
# libtensorflow 2.21 and the CUDA 12 user-space libraries come from the pinned PyPI wheels of
# scripts/tensorflow/requirements-gpu.txt (no NVIDIA base image; the host only provides the driver, libcuda.so.1,
# through the NVIDIA container toolkit); scripts/setup-tensorflow.mjs builds @tensorflow/tfjs-node-gpu's binding
# against them (docs/decisions/0059-libtensorflow-from-pypi.md).
FROM ${NODE_IMAGE} AS runtime-deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app
# ci: skip installs Debian packages into the image (the test setup installs the same ones on the CI machine)
# Debian packages follow the pinned base image's release (bookworm); exact versions would break on security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make python3-pip libdnnl-dev libopenblas-dev \
    && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY native/build.mjs ./native/build.mjs
# Install scripts off: the native addon is built below from its sources, the tfjs-node packages by setup:tensorflow.
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --omit=dev --ignore-scripts
COPY native/src/ ./native/src/
COPY scripts/setup-tensorflow.mjs ./scripts/setup-tensorflow.mjs
COPY scripts/tensorflow/ ./scripts/tensorflow/
RUN node native/build.mjs
# ci: skip downloads about 2.9 GB of GPU wheels into /opt/ssl3d (run here with `npm run setup:tensorflow -- --variant gpu`)
RUN SSL3D_CACHE=/opt/ssl3d PYTHON=python3 node scripts/setup-tensorflow.mjs --variant gpu \
    && rm -rf node_modules/@tensorflow/tfjs-node native/build/*.o \
    && tr ':' '\n' < node_modules/@tensorflow/tfjs-node-gpu/deps/ssl3d-loader-path > ssl3d-cuda.conf

# ---- runtime: the ssl3d CLI; TensorFlow 2.21 on CUDA 12 (tfjs-node-gpu), native CPU kernels for the rest ----
FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="ssl3d runtime" \
      org.opencontainers.image.description="ssl3d CLI: preprocessing and pre-training with TensorFlow 2.21 on CUDA 12 (tfjs-node-gpu) or the native CPU kernels" \
      org.opencontainers.image.licenses="Apache-2.0"
# ci: skip installs Debian packages into the image (runtime libraries of the native kernels; zlib for cuDNN)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libdnnl2 libopenblas0 libgomp1 zlib1g \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# ci: skip the libraries live outside the app folder, in the image's /opt
COPY --from=runtime-deps /opt/ssl3d /opt/ssl3d
COPY --from=runtime-deps /app/node_modules ./node_modules
COPY --from=runtime-deps /app/native/build ./native/build
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin/ ./bin/
# Every CUDA library folder on the loader path (TensorFlow dlopens cusolver, nvJitLink, ... which its own RUNPATH
# misses, and would otherwise run on the CPU); TensorFlow takes GPU memory as needed, not all of it at start (several
# ranks per node); the driver's compute libraries are requested from the container toolkit.
ENV NODE_ENV=production \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    nnssl_raw=/data/raw \
    nnssl_preprocessed=/data/preprocessed \
    nnssl_results=/data/results
# ci: skip writes the loader configuration and image paths outside the app folder
COPY --from=runtime-deps /app/ssl3d-cuda.conf /etc/ld.so.conf.d/ssl3d-cuda.conf
# ci: skip writes the loader cache and image paths outside the app folder
RUN ldconfig \
    && node bin/ssl3d.mjs --version \
    && ln -s /app/bin/ssl3d.mjs /usr/local/bin/ssl3d \
    && mkdir -p /data && chown 65532:65532 /data
USER 65532:65532
ENTRYPOINT ["node", "/app/bin/ssl3d.mjs"]
CMD ["--help"]

# ---- runtime-cpu-deps: production dependencies and the native CPU kernel addon (oneDNN + OpenBLAS), no CUDA ----
FROM ${NODE_IMAGE} AS runtime-cpu-deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Package versions are those of the base image's Debian release (bookworm).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ libdnnl-dev libopenblas-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY native/build.mjs ./native/build.mjs
ENV SSL3D_NATIVE=0
# --ignore-scripts: the tfjs-node packages' install scripts would download libtensorflow (unused on the CPU backend;
# without their binding `auto` keeps the native kernels). Optional dependencies stay: resvg's platform binding
# (progress.png, reports) is one. The native addon is built explicitly below.
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --omit=dev --ignore-scripts
# The native kernel addon (native/build.mjs, the package's `install` hook) with oneDNN and OpenBLAS; it must be built.
COPY native/src/ ./native/src/
RUN SSL3D_NATIVE=1 node native/build.mjs && test -f native/build/ssl3d_native.node

# ---- runtime-cpu: the ssl3d CLI on the CPU (tfjs cpu backend with the native kernels), no CUDA ----
FROM ${NODE_IMAGE} AS runtime-cpu
LABEL org.opencontainers.image.title="ssl3d runtime (CPU)" \
      org.opencontainers.image.description="ssl3d CLI: preprocessing and pre-training on the CPU with native oneDNN/OpenBLAS kernels" \
      org.opencontainers.image.licenses="Apache-2.0"
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libdnnl2 libopenblas0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=runtime-cpu-deps /app/node_modules ./node_modules
COPY --from=runtime-cpu-deps /app/native/build/ssl3d_native.node ./native/build/ssl3d_native.node
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin/ ./bin/
ENV NODE_ENV=production \
    SSL3D_BACKEND=cpu \
    nnssl_raw=/data/raw \
    nnssl_preprocessed=/data/preprocessed \
    nnssl_results=/data/results
# hadolint ignore=DL3059
RUN node bin/ssl3d.mjs --version \
    && ln -s /app/bin/ssl3d.mjs /usr/local/bin/ssl3d \
    && mkdir -p /data && chown 65532:65532 /data
USER 65532:65532
ENTRYPOINT ["node", "/app/bin/ssl3d.mjs"]
CMD ["--help"]

# ---- operator: one bundled file on the slim Node image, no TensorFlow, no node_modules ----
FROM ${NODE_IMAGE} AS operator
LABEL org.opencontainers.image.title="ssl3d operator" \
      org.opencontainers.image.description="Kubernetes operator for ssl3d Collections, Plans and PretrainRuns" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
COPY --from=build /app/dist/operator.mjs /app/dist/operator.mjs.map ./
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["node", "/app/operator.mjs"]
