// Trains LeNet-300-100 (784-300-100-10, ReLU) on Fashion-MNIST for one epoch
// through the library API and prints the test accuracy.
//
//   build/examples/mlp_fashion [FASHION_MNIST_DIR] [THREADS]
//
// The directory defaults to where Debian's dataset-fashion-mnist package puts
// the IDX files. Expect about 84% after one epoch.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "pare/base/error.h"
#include "pare/base/thread_pool.h"
#include "pare/data/data.h"
#include "pare/nn/module.h"
#include "pare/train/trainer.h"

int main(int argc, char** argv) {
  try {
    const std::string dir = argc > 1 ? argv[1] : pare::data::kFashionMnistDir;
    if (argc > 2) pare::set_num_threads(std::atoi(argv[2]));

    pare::data::TrainTest data = pare::data::fashion_mnist(dir);  // inputs (N, 1, 28, 28) in [0, 1]
    auto model = pare::nn::Model::build(pare::nn::preset("lenet300"), /*seed=*/0);
    std::printf("%s\n", model->summary().c_str());

    pare::train::TrainConfig cfg;
    cfg.epochs = 1;
    cfg.batch = 60;
    cfg.seed = 0;
    cfg.optimizer.name = "adam";
    cfg.optimizer.lr = 1.2e-3f;

    pare::train::Observer progress;
    progress.on_step = [](int64_t epoch, int64_t batch, int64_t batches, double loss) {
      if (batch % 200 == 0 || batch == batches)
        std::printf("epoch %lld  batch %lld/%lld  loss %.4f\n", static_cast<long long>(epoch),
                    static_cast<long long>(batch), static_cast<long long>(batches), loss);
    };
    pare::train::TrainResult r = pare::train::fit(*model, data.train, data.test, cfg, progress);

    std::printf("test accuracy %.2f%% (loss %.4f) after %lld steps, %.1f s on %d threads\n",
                100 * r.final_test.accuracy, r.final_test.loss, static_cast<long long>(r.steps), r.seconds,
                pare::num_threads());
    return 0;
  } catch (const pare::Error& e) {
    std::fprintf(stderr, "mlp_fashion: %s\n", e.what());
    return 1;
  }
}
