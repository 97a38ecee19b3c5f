package kms

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// AWS managed keys: alias/aws/<service> names a key that AWS creates the
// first time the service needs it. keyhold creates it the first time a
// caller names the alias: a symmetric key with KeyManager AWS, the
// AWS-managed key policy (use only through the service, kms:ViaService;
// metadata readable by the account), and yearly rotation. Nobody can
// change it: the policy grants no management action, as in AWS.

// awsManagedServices are the services whose alias/aws/<service> keys AWS
// documents; any other alias/aws/ name does not exist.
var awsManagedServices = map[string]bool{
	"acm": true, "backup": true, "cloudtrail": true, "codecommit": true, "connect": true, "dynamodb": true, "ebs": true,
	"elasticfilesystem": true, "es": true, "fsx": true, "glue": true, "kafka": true, "kinesis": true, "kinesisvideo": true,
	"lambda": true, "lightsail": true, "rds": true, "redshift": true, "s3": true, "secretsmanager": true, "sns": true,
	"sqs": true, "ssm": true, "xray": true,
}

var awsManagedAlias = regexp.MustCompile(`^alias/aws/([a-z0-9-]+)$`)

// awsManagedPolicy is the key policy AWS gives an AWS managed key.
func awsManagedPolicy(account, region, service string) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Id":"auto-%[3]s-1","Statement":[`+
		`{"Sid":"Allow access through %[3]s for all principals in the account that are authorized to use %[3]s","Effect":"Allow","Principal":{"AWS":"*"},`+
		`"Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:GenerateDataKey*","kms:CreateGrant","kms:DescribeKey"],"Resource":"*",`+
		`"Condition":{"StringEquals":{"kms:CallerAccount":"%[1]s","kms:ViaService":"%[3]s.%[2]s.amazonaws.com"}}},`+
		`{"Sid":"Allow direct access to key metadata to the account","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%[1]s:root"},`+
		`"Action":["kms:Describe*","kms:Get*","kms:List*"],"Resource":"*"}]}`, account, region, service)
}

// awsManagedKey creates the AWS managed key an alias/aws/<service> name
// stands for, once; a concurrent creator's alias wins.
func (s *Service) awsManagedKey(ctx context.Context, account, region, name string) (store.Key, bool, error) {
	m := awsManagedAlias.FindStringSubmatch(name)
	if m == nil || !awsManagedServices[m[1]] {
		return store.Key{}, false, nil
	}
	service := m[1]
	id, err := newKeyID()
	if err != nil {
		return store.Key{}, true, internal("awsManagedKey", err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	k := store.Key{AccountID: account, Region: region, ID: id, CreationDate: now, KeyUsage: UsageEncryptDecrypt, KeySpec: SpecSymmetric,
		Origin: OriginAWSKMS, State: StateEnabled, KeyManager: KeyManagerAWS, Policy: awsManagedPolicy(account, region, service),
		Description: fmt.Sprintf("Default key that protects my %s resources when no other key is defined", strings.ToUpper(service)),
		Rotation:    store.Rotation{Enabled: true, PeriodDays: defaultRotationDays, Next: NextRotation(now, defaultRotationDays)}}
	if k.SealedMaterial, k.BackingKeyID, err = s.soft.NewKeyMaterial(id, SpecSymmetric); err != nil {
		return store.Key{}, true, internal("awsManagedKey", err)
	}
	k.Materials = []store.KeyMaterial{{ID: k.BackingKeyID, Sealed: k.SealedMaterial, Created: now}}
	if err := s.st.CreateKey(ctx, k); err != nil {
		return store.Key{}, true, internal("awsManagedKey", err)
	}
	err = s.st.CreateAlias(ctx, store.Alias{AccountID: account, Region: region, Name: name, KeyID: id, Created: now, Updated: now})
	if errors.Is(err, store.ErrExists) {
		s.st.DeleteKey(ctx, account, region, id) // another request created it first
		a, err := s.st.GetAlias(ctx, account, region, name)
		if err != nil {
			return store.Key{}, true, internal("awsManagedKey", err)
		}
		k, err := s.getKey(ctx, account, region, a.KeyID)
		return k, true, s.storeErr("awsManagedKey", err, name)
	}
	if err != nil {
		s.st.DeleteKey(ctx, account, region, id)
		return store.Key{}, true, internal("awsManagedKey", err)
	}
	k.Version = 1
	s.cacheKeyPut(k)
	s.log.Info("created AWS managed key on first use", "alias", name, "key", keyARN(k))
	return k, true, nil
}
